"""What every handler of a client frame works with: the frame, the adapters, and the checks that
every channel feature applies the same way (size and rate, token expiry, private-channel policies).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ripple import codec
from ripple.catalog import Catalog, PostgresCatalog
from ripple.channels.closing import close_channel, expired_reason
from ripple.config import Settings
from ripple.gateway import ConnectionsApi
from ripple.metrics import record_reply
from ripple.protocol import errors
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError
from ripple.protocol.serializer import encode
from ripple.store import Member, Store


@dataclass
class Frame:
    """One decoded frame and where its answers go."""

    connection_id: str
    vsn: str
    msg: m.Message
    size: int = 0


@dataclass
class Context:
    store: Store
    api: ConnectionsApi
    config: Settings
    catalog: Catalog = field(default_factory=PostgresCatalog)

    def send(self, connection_id: str, vsn: str, msg: m.Message) -> None:
        self.api.send(connection_id, encode(msg, vsn))

    def reply(self, frame: Frame, msg: m.Message) -> None:
        record_reply(frame.msg, msg)
        self.send(frame.connection_id, frame.vsn, msg)

    def admit(self, frame: Frame, max_bytes: int) -> None:
        """The size and rate limits every client message passes; raises ChannelError if it fails one."""
        if frame.size > max_bytes:
            raise errors.payload_too_large()
        if not self.store.spend(frame.connection_id, self.config.max_events_per_second, time.time()):
            raise ChannelError("MessagePerSecondRateLimitReached", "Too many messages per second")

    def member(self, frame: Frame) -> Member | None:
        """The sender's membership of the frame's topic, if it is live; an expired one is closed,
        telling the client why. Raises ChannelError when the sender has not joined the topic."""
        member = self.store.member(frame.connection_id, frame.msg.topic)
        if member is None:
            raise errors.unmatched_topic()
        return member if self.live(member) else None

    def live(self, member: Member) -> bool:
        """False (and the channel closed, telling the client why) once the channel's token expired."""
        now = time.time()
        if member.live(now):
            return True
        self.close(member, expired_reason(member.exp, now))
        return False

    def with_reads(self, member: Member) -> Member:
        """`member` with what it may receive on its private channel (per extension); raises
        ChannelError when it may read neither broadcast nor presence."""
        if not member.private:
            return member
        access = self.catalog.channel_access(member.role, codec.loads(member.claims), member.channel)
        if not (access.read_broadcast or access.read_presence):
            raise errors.unauthorized_read(member.channel)
        return replace(member, sees_broadcast=access.read_broadcast, sees_presence=access.read_presence)

    def may_write(self, member: Member, extension: str) -> bool:
        """Whether `member` may send on its channel: always on public channels; on private ones
        as realtime.messages' INSERT policies say, evaluated on the first send and remembered."""
        known = member.can_broadcast if extension == "broadcast" else member.can_track
        if known is not None:
            return known
        access = self.catalog.channel_access(member.role, codec.loads(member.claims), member.channel)
        self.store.set_write_access(member.connection_id, member.topic,
                                    access.write_broadcast, access.write_presence)
        return access.write_broadcast if extension == "broadcast" else access.write_presence

    def close(self, member: Member, reason: str) -> None:
        close_channel(self.store, self.api, member.connection_id, member.topic, member.vsn,
                      member.join_ref, reason)
