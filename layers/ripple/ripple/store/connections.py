"""Connection rows: one per open socket, keyed by API Gateway's connection id."""
from __future__ import annotations

from dataclasses import dataclass


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


def last_heard(row: dict) -> float:
    """When a connection row's client was last heard from, in epoch seconds: `last_seen`, else
    `connected_at` (API Gateway's milliseconds)."""
    seen = row.get("last_seen")
    return float(seen) if seen is not None else float(row.get("connected_at", 0)) / 1000
