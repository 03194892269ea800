"""Connection rows: one per open socket, keyed by API Gateway's connection id."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Connection:
    """One open WebSocket, as `$connect` recorded it."""

    connection_id: str
    role: str
    claims: str
    connected_at: int
    expires_at: int
    # Epoch seconds the client was last heard from ($connect, then each heartbeat).
    last_seen: int | None = None


class Entered(NamedTuple):
    """A connection entering a channel (`Store.enter_channel`): the connection, and whether the
    topic was already among its channels, i.e. whether an earlier channel of that topic may
    still hold rows (a rejoin). A first join of a topic has nothing to replace."""

    connection: Connection
    rejoin: bool


def last_heard(row: dict) -> float:
    """When a connection row's client was last heard from, in epoch seconds: `last_seen`, else
    `connected_at` (API Gateway's milliseconds)."""
    seen = row.get("last_seen")
    return float(seen) if seen is not None else float(row.get("connected_at", 0)) / 1000
