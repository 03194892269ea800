"""Broadcast replay: `config.broadcast.replay: {since, limit}` replays a topic's logged
`realtime.send` messages before live traffic, oldest first, each with `meta: {replayed: true, id}`.

Unlike Supabase (newest 25, reversed, silently dropping the oldest when more were missed): oldest
first, up to MAX_REPLAY_LIMIT, and a `system` message says how many the limit left out and where
to ask again. A window holds the drain lock from before the member is stored until the replay is
posted: every message is then either in the replay (delivered before the join) or live (after),
never both and never neither. A request reaching back past the retention window is told so
(`replay_expired`) before the part that is still kept.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ripple.db import Database
from ripple.gateway import ConnectionsApi
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError, unauthorized_read
from ripple.protocol.join import ReplayOptions
from ripple.protocol.serializer import encode
from ripple.store import Member

DRAIN_LOCK = "select pg_advisory_xact_lock(hashtext('realtime.drain'))"
REPLAY = "select * from realtime.replay_broadcast(%s, %s, %s, %s, %s)"
HORIZON = "select * from realtime.log_horizon()"


@dataclass
class Window:
    """An open replay window: the drain is held until it closes."""

    db: Database
    conn: Any
    horizon: dict[str, Any]

    def replay(self, api: ConnectionsApi, member: Member, options: ReplayOptions) -> int:
        """Post the topic's missed messages to `member`, then the truncation notice if the limit
        left some out; returns how many were posted. Raises ChannelError when the member may not
        read the topic's broadcasts."""
        if not member.sees_broadcast:
            raise unauthorized_read(member.channel)
        if self._expired(options):
            api.send(member.connection_id, encode(expired(member, self.horizon), member.vsn))
        rows = self.db.execute(self.conn, REPLAY, (member.channel, member.private, options.since,
                                                   options.after, options.limit))
        for row in rows:
            meta = {"replayed": True, "id": str(row["position"])}
            api.send(member.connection_id, encode(m.broadcast(member.topic, row["event"], row["payload"], meta),
                                                  member.vsn))
        left = int(rows[0]["total"]) - len(rows) if rows else 0
        if left > 0:
            api.send(member.connection_id, encode(truncated(member, left, rows[-1]["position"]), member.vsn))
        return len(rows)

    def _expired(self, options: ReplayOptions) -> bool:
        """Whether the request reaches back past what expiry has already removed."""
        if options.after is not None and options.after < self.horizon["horizon_position"]:
            return True
        return options.since is not None and options.since < self.horizon["horizon_at"].timestamp() * 1000


def expired(member: Member, horizon: dict[str, Any]) -> m.Message:
    """The `system` message of a replay asking from before the retention window: what follows is
    not the whole history, the app must refetch."""
    start = horizon["horizon_at"].isoformat()
    msg = m.system(member.topic, "broadcast", "ok",
                   f"Replay incomplete: messages before {start} (id {horizon['horizon_position']}) "
                   f"have expired; refetch the state, then follow the replay", member.join_ref)
    msg.payload.update({"code": "replay_expired", "horizon_id": str(horizon["horizon_position"]),
                        "horizon_at": start})
    return msg


def truncated(member: Member, left: int, last: int) -> m.Message:
    """The `system` message of a replay the limit cut short: how many are left out and where the
    next replay starts (status "ok": realtime-py treats "error" as a failed channel and rejoins)."""
    msg = m.system(member.topic, "broadcast", "ok",
                   f"Replay truncated: {left} more message(s) after id {last}; "
                   f"join again with replay.after = {last} for the rest", member.join_ref)
    msg.payload.update({"code": "replay_truncated", "left_out": left, "last_id": str(last)})
    return msg


@contextmanager
def window(db: Callable[[], Database], options: ReplayOptions | None) -> Iterator[Window | None]:
    """A replay window when `options` asks for a replay (None otherwise: no lock, no query);
    raises ChannelError when the log is turned off."""
    if options is None:
        yield None
        return
    database = db()
    with database.transaction() as conn:
        database.execute(conn, DRAIN_LOCK)
        horizon = database.execute(conn, HORIZON)[0]
        if not horizon["retained"]:
            raise ChannelError("ReplayUnavailable", "this server keeps no message log (log_retention_hours is 0)")
        yield Window(database, conn, horizon)
