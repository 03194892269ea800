"""Ending one channel of a connection: everything it held goes, the topic hears its presence leave.

A channel ends when the client leaves or rejoins it, when its token is refused or has expired,
or when its new claims may no longer read what it subscribed to. The closing itself is the same
every time: the channel's bindings, membership and presence rows are removed, the connection's
channel count gives the topic back, a tracked presence is announced as a leave — and, when the
server ends it, the client gets a `system` error followed by `phx_close`, as Supabase sends.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple

from ripple.channels.lifecycle import announce_leave, depart
from ripple.gateway import ConnectionsApi, Gone
from ripple.protocol import message as m
from ripple.protocol.serializer import encode
from ripple.store import Store


class Expired(NamedTuple):
    """A channel whose token had expired when something would have reached it."""

    connection_id: str
    topic: str
    vsn: str
    join_ref: str | None
    exp: int


def drop_channel(store: Store, api: ConnectionsApi, connection_id: str, topic: str,
                 keep_place: bool = False) -> None:
    """Remove the channel's rows, if it has any, and announce its presence leave. With
    `keep_place` the topic stays counted against the connection's channel limit: a rejoin of
    the topic takes the place over."""
    member = store.remove_channel(connection_id, topic)
    if member is None:
        return
    if not keep_place:
        store.leave_channel(connection_id, topic)
    announce_leave(store, api, member)


def close_channel(store: Store, api: ConnectionsApi, connection_id: str, topic: str, vsn: str,
                  join_ref: str | None, reason: str) -> None:
    """End the channel from the server's side: drop it, then tell the client why."""
    drop_channel(store, api, connection_id, topic)
    frames = [encode(m.system(topic, "system", "error", reason, join_ref), vsn),
              encode(m.Message(topic=topic, event="phx_close", payload={}, join_ref=join_ref), vsn)]
    try:
        for frame in frames:
            api.send(connection_id, frame)
    except Gone:
        depart(store, api, connection_id)


def expired_reason(exp: int, now: float) -> str:
    return f"Token has expired {max(0, int(now - exp))} seconds ago"


def close_expired(store: Store, api: ConnectionsApi, channels: Iterable[Expired],
                  now: float | None = None) -> int:
    """Close each channel whose token has expired, once per channel; returns how many were closed."""
    now = time.time() if now is None else now
    seen = set()
    for channel in channels:
        if (channel.connection_id, channel.topic) in seen:
            continue
        seen.add((channel.connection_id, channel.topic))
        close_channel(store, api, channel.connection_id, channel.topic, channel.vsn, channel.join_ref,
                      expired_reason(channel.exp, now))
    return len(seen)
