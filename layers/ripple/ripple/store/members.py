"""Member rows: one connection joined to one topic, with its broadcast and presence config.

Every member of a topic shares one bucket (one Query reads them all); a connection tracking
presence is also listed under the presence-holders bucket, which the liveness sweep reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOPIC_PREFIX = "topic:"
PRESENCE_HOLDERS = "presence:holders"


def topic_key(topic: str) -> str:
    """The bucket holding every member of `topic` (one Query reads them all)."""
    return TOPIC_PREFIX + topic


@dataclass(frozen=True)
class Member:
    connection_id: str
    topic: str
    vsn: str
    join_ref: str | None = None
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_key: str = ""
    presence: dict[str, Any] | None = None  # this connection's tracked meta, with its phx_ref
    private: bool = False
    # What this member may send: always on public channels; on private ones what
    # realtime.messages' policies say, None until its first send asks.
    can_broadcast: bool | None = True
    can_track: bool | None = True
    # What this member may receive: everything on public channels; on private ones what
    # realtime.messages' SELECT policies allow per extension, evaluated at join.
    sees_broadcast: bool = True
    sees_presence: bool = True
    # postgres_changes bindings refused at join (JSON), subscribed again at the next valid
    # access_token: a client often joins before its user's token has reached it.
    refused: str | None = None
    # Joined with `config.broadcast.replay`: its `realtime.send` pushes carry `meta: {id}`.
    log_ids: bool = False
    role: str = "anon"
    claims: str = "{}"
    exp: int = 0

    @property
    def channel(self) -> str:
        """The topic as apps name it (`room-1` for `realtime:room-1`), as realtime.topic() returns it."""
        return self.topic.removeprefix("realtime:")

    def live(self, now: float) -> bool:
        return self.exp == 0 or self.exp > now
