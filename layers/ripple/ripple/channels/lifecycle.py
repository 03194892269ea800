"""A connection's life on the server side: departing (on `$disconnect`, a 410 from
`@connections`, or silence), and the presence leaves each departure announces.

Everything that finds a connection gone comes here, so a departure is handled one way.
"""
from __future__ import annotations

import time

from ripple.channels.relay import relay
from ripple.config import settings
from ripple.gateway import ConnectionsApi, Outcome
from ripple.log import logger
from ripple.protocol.message import presence_diff
from ripple.protocol.presence import diff
from ripple.store import Member, Store


def depart(store: Store, api: ConnectionsApi, connection_id: str) -> None:
    """Forget a connection everywhere and tell each topic it tracked presence on that it left."""
    for member in store.delete_connection(connection_id):
        announce_leave(store, api, member)


def depart_gone(store: Store, api: ConnectionsApi, outcome: Outcome) -> None:
    """Depart every connection a round of posts found gone."""
    for connection_id in outcome.gone:
        depart(store, api, connection_id)


def announce(store: Store, api: ConnectionsApi, topic: str, private: bool, payload: dict) -> None:
    """Send a `presence_diff` to the members of `topic` (its private or its public side);
    members found gone depart in turn."""
    members = [m for m in store.members(topic) if m.private == private and m.sees_presence]
    depart_gone(store, api, relay(api, members, presence_diff(topic, payload)))


def announce_leave(store: Store, api: ConnectionsApi, member: Member) -> None:
    """If `member` tracked presence, tell its topic that it left."""
    if member.presence is not None:
        announce(store, api, member.topic, member.private, diff(member.presence_key, [], [member.presence]))


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
