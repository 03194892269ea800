"""Private channels: what realtime.messages' RLS policies allow one subscriber on one topic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ripple import codec
from ripple.db import Database


@dataclass(frozen=True)
class ChannelAccess:
    read_broadcast: bool
    read_presence: bool
    write_broadcast: bool
    write_presence: bool


def channel_access(db: Database, role: str, claims: dict[str, Any], channel: str) -> ChannelAccess:
    """Evaluate the policies as `role` with `claims` for `channel` (one round trip)."""
    with db.transaction() as conn:
        row = db.execute(conn, "select * from realtime.channel_access(%s, %s::jsonb, %s)",
                         (role, codec.dumps(claims), channel))[0]
    return ChannelAccess(**row)
