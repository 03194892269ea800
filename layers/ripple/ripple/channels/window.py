"""A replay window: the drain lock, held by a join from before its member and bindings are
stored until its replay is posted, and the message log's horizon read under it.

Every logged message is then either acked before the window opened (in the log, not delivered
to the new channel live: replayed) or drained after it closed (seen live by the stored channel,
positioned after everything the replay read): once each, in order, with no gap at the boundary.
While a window is open the drain waits, so a replay's size bounds that wait (MAX_REPLAY_LIMIT).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ripple import codec
from ripple.db import Database
from ripple.gateway import ConnectionsApi, Delivery
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError
from ripple.store import Member

DRAIN_LOCK = "select pg_advisory_xact_lock(hashtext('realtime.drain'))"
HORIZON = "select * from realtime.log_horizon()"
OWE = "select realtime.owe(%s::jsonb)"


@dataclass
class Window:
    """An open window: statements run inside it see the log as of the lock."""

    db: Database
    conn: Any
    horizon: dict[str, Any]

    def execute(self, sql: str, params: tuple | None = None) -> list:
        return self.db.execute(self.conn, sql, params)

    def post(self, api: ConnectionsApi, connection_id: str, frames: list[str]) -> None:
        """Post a replay's `frames` to the connection, in order. What cannot get through now
        (throttled, API Gateway unavailable past the retries) is owed, stored in the window's
        transaction: the drain posts owed frames before anything live, so a replay never has a
        silent gap."""
        if not frames:
            return
        outcome = api.deliver([Delivery(connection_id, frames)])
        if outcome.owed:
            self.execute(OWE, (codec.dumps([{"connection_id": d.connection_id, "frames": d.frames,
                                              "since": time.time()} for d in outcome.owed]),))

    def expired(self, after: int | None, since: int | None) -> bool:
        """Whether a request from `after` (a position) or `since` (epoch ms) reaches back past
        what expiry has removed."""
        if after is not None and after < self.horizon["horizon_position"]:
            return True
        return since is not None and since < self.horizon["horizon_at"].timestamp() * 1000

    def expired_notice(self, member: Member, extension: str) -> m.Message:
        """The `system` message of a replay asking from before the retention window: what follows
        is not the whole history, the app must refetch. Status "ok": realtime-py treats "error"
        as a failed channel and rejoins, which would ask again."""
        start = self.horizon["horizon_at"].isoformat()
        last = self.horizon["horizon_position"]
        msg = m.system(member.topic, extension, "ok",
                       f"Replay incomplete: everything before {start} (position {last}) has expired; "
                       f"refetch the state, then follow the replay", member.join_ref)
        msg.payload.update({"code": "replay_expired", "horizon_id": str(last), "horizon_at": start})
        return msg


def truncated_notice(member: Member, extension: str, left: int, last: int) -> m.Message:
    """The `system` message of a replay the limit cut short: how many are left out and where the
    next replay starts."""
    msg = m.system(member.topic, extension, "ok",
                   f"Replay truncated: {left} more after position {last}; "
                   f"join again from position {last} for the rest", member.join_ref)
    msg.payload.update({"code": "replay_truncated", "left_out": left, "last_id": str(last)})
    return msg


@contextmanager
def window(db: Callable[[], Database], wanted: bool) -> Iterator[Window | None]:
    """A window when `wanted` (None otherwise: no lock, no query); raises ChannelError when the
    log is turned off."""
    if not wanted:
        yield None
        return
    database = db()
    with database.transaction() as conn:
        database.execute(conn, DRAIN_LOCK)
        horizon = database.execute(conn, HORIZON)[0]
        if not horizon["retained"]:
            raise ChannelError("UnableToReplayMessages", "this server keeps no message log (log_retention_hours is 0)")
        yield Window(database, conn, horizon)
