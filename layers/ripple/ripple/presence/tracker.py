"""Presence state kept on member rows; diffs announced to the topic as Phoenix Presence does."""
from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable
from typing import Any

from ripple.broadcast.relay import relay
from ripple.channels.member import Member
from ripple.config import settings
from ripple.gateway import ConnectionsApi
from ripple.log import logger
from ripple.protocol.message import Message
from ripple.store import Store


def new_ref() -> str:
    """A unique `phx_ref` for one tracked meta."""
    return base64.urlsafe_b64encode(os.urandom(9)).decode()


def state(members: Iterable[Member], private: bool) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`presence_state`: every key with the metas of every connection tracking under it."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for member in members:
        if member.presence is not None and member.private == private:
            out.setdefault(member.presence_key, {"metas": []})["metas"].append(member.presence)
    return out


def diff(key: str, joins: list[dict], leaves: list[dict]) -> dict[str, dict]:
    """`presence_diff` payload for one key."""
    return {"joins": {key: {"metas": joins}} if joins else {},
            "leaves": {key: {"metas": leaves}} if leaves else {}}


def announce(store: Store, api: ConnectionsApi, topic: str, private: bool, payload: dict) -> None:
    """Send a `presence_diff` to the members of `topic` (its private or its public side);
    members found gone depart in turn."""
    members = [m for m in store.members(topic) if m.private == private]
    outcome = relay(api, members, Message(topic=topic, event="presence_diff", payload=payload))
    for connection_id in outcome.gone:
        depart(store, api, connection_id)


def depart(store: Store, api: ConnectionsApi, connection_id: str) -> None:
    """Forget a connection everywhere and tell each topic it tracked presence on that it left."""
    for member in store.delete_connection(connection_id):
        if member.presence is not None:
            announce(store, api, member.topic, member.private,
                     diff(member.presence_key, [], [member.presence]))


def sweep(store: Store, api: ConnectionsApi, *, silence_seconds: float | None = None,
          budget_seconds: float = 5.0, now: float | None = None) -> int:
    """Depart every presence holder not heard from for `silence_seconds` (the clients heartbeat
    every 25-30 s; default `settings().presence_timeout_seconds`) and close its socket; returns
    how many departed.

    API Gateway's `$disconnect` is best effort, and the backend's own posts keep a socket from
    idling out, so a client's silence is what bounds how long a vanished client stays present.
    Costs one Query for the holders and one BatchGetItem per 100 of them; departures stop once
    `budget_seconds` are spent, and the next sweep takes up the rest.

        sweep(store(), connections_api(), silence_seconds=90)
    """
    started = time.monotonic()
    limit = settings().presence_timeout_seconds if silence_seconds is None else silence_seconds
    holders = store.presence_holders()
    if not holders:
        return 0
    heard = store.last_heard(holders)
    cutoff = (time.time() if now is None else now) - limit
    silent = sorted(cid for cid in holders if heard.get(cid, 0.0) < cutoff)
    departed = 0
    for connection_id in silent:
        if time.monotonic() - started > budget_seconds:
            logger.info("presence sweep out of time", extra={"departed": departed,
                                                             "left": len(silent) - departed})
            break
        # Rows first, then the socket: its $disconnect then finds nothing left to announce.
        depart(store, api, connection_id)
        try:
            api.close(connection_id)
        except Exception:
            logger.exception("closing a silent connection failed", extra={"connection_id": connection_id})
        departed += 1
    return departed
