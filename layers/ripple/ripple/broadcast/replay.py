"""Broadcast replay: `config.broadcast.replay: {since, limit}` (or Ripple's `after`) replays a
topic's logged `realtime.send` messages before live traffic, oldest first, each with
`meta: {replayed: true, id}`.

Unlike Supabase (newest 25, reversed, silently dropping the oldest when more were missed): oldest
first, up to MAX_REPLAY_LIMIT, and a `system` message says how many the limit left out and where
to ask again; a request reaching back past the retention window is told so (`replay_expired`).
Runs inside a `channels.window.Window`, so nothing is both replayed and live.
"""
from __future__ import annotations

from ripple.channels.window import Window, truncated_notice
from ripple.gateway import ConnectionsApi
from ripple.protocol import message as m
from ripple.protocol.errors import unauthorized_read
from ripple.protocol.join import ReplayOptions
from ripple.protocol.serializer import encode
from ripple.store import Member

REPLAY = "select * from realtime.replay_broadcast(%s, %s, %s, %s, %s)"


def replay(window: Window, api: ConnectionsApi, member: Member, options: ReplayOptions) -> int:
    """Post the topic's missed messages to `member`, then the truncation notice if the limit left
    some out; returns how many were posted. Raises ChannelError when the member may not read the
    topic's broadcasts."""
    if not member.sees_broadcast:
        raise unauthorized_read(member.channel)
    frames = []
    if window.expired(options.after, options.since):
        frames.append(encode(window.expired_notice(member, "broadcast"), member.vsn))
    rows = window.execute(REPLAY, (member.channel, member.private, options.since, options.after, options.limit))
    for row in rows:
        meta = {"replayed": True, "id": str(row["position"])}
        frames.append(encode(m.broadcast(member.topic, row["event"], row["payload"], meta), member.vsn))
    left = int(rows[0]["total"]) - len(rows) if rows else 0
    if left > 0:
        frames.append(encode(truncated_notice(member, "broadcast", left, rows[-1]["position"]), member.vsn))
    window.post(api, member.connection_id, frames)
    return len(rows)
