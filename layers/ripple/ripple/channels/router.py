"""The `$default` route: one client frame in, replies and pushes out through `@connections`.

The serializer is read off the frame itself (V2 frames are JSON arrays, V1 frames objects), so a
heartbeat costs no lookup at all.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ripple import codec
from ripple.auth.jwt import AuthError, Claims, verify
from ripple.broadcast.relay import broadcast_message
from ripple.changes.subscription import SubscriptionError, echo, recheck, subscribe
from ripple.channels.access import channel_access
from ripple.channels.closing import close_channel, drop_channel, expired_reason, relay_to_members
from ripple.channels.member import Member
from ripple.config import Settings, settings
from ripple.db import database
from ripple.events import WebSocketEvent, response
from ripple.gateway import ConnectionsApi, Gone, connections_api
from ripple.log import logger
from ripple.metrics import record_frame, record_reply
from ripple.presence.tracker import announce, depart, new_ref
from ripple.presence.tracker import diff as presence_diff
from ripple.presence.tracker import state as presence_state
from ripple.protocol import message as m
from ripple.protocol.serializer import V1, V2, FrameError, decode, encode
from ripple.store import NoConnection, Store, TooManyChannels, store


@dataclass
class Frame:
    """One decoded frame and where its answers go."""

    connection_id: str
    vsn: str
    msg: m.Message
    size: int = 0


@dataclass(frozen=True)
class ChannelOptions:
    """The broadcast and presence parts of a join's `config`."""

    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_enabled: bool = False
    presence_key: str = ""
    private: bool = False

    @classmethod
    def parse(cls, config: dict) -> ChannelOptions:
        """Raises ValueError on a config of the wrong shape."""
        broadcast = config.get("broadcast") or {}
        presence = config.get("presence") or {}
        if not isinstance(broadcast, dict) or not isinstance(presence, dict):
            raise ValueError("broadcast and presence must be objects")
        key = presence.get("key") or ""
        if not isinstance(key, str):
            raise ValueError("presence.key must be a string")
        return cls(broadcast_self=bool(broadcast.get("self")), broadcast_ack=bool(broadcast.get("ack")),
                   presence_enabled=bool(presence.get("enabled")), presence_key=key,
                   private=bool(config.get("private")))


@dataclass
class Router:
    store: Store
    api: ConnectionsApi
    config: Settings
    db: Callable[[], Any] = database

    def handle(self, connection_id: str, body: str | None) -> None:
        text = body or ""
        vsn = V2 if text.lstrip().startswith("[") else V1
        try:
            msg = decode(text, vsn)
        except FrameError as exc:
            self.send(connection_id, vsn, m.Message(topic=m.PHOENIX_TOPIC, event="phx_error",
                                                    payload={"reason": f"MalformedMessage: {exc}"}))
            return
        frame = Frame(connection_id, vsn, msg, len(text.encode()))
        record_frame(msg.event)
        action = self.actions.get(msg.event)
        if action is None:
            self.reply(frame, m.error(msg, f"UnknownEvent: unknown event {msg.event!r}"))
            return
        action(self, frame)

    # -- sending --------------------------------------------------------------------------------
    def send(self, connection_id: str, vsn: str, msg: m.Message) -> None:
        self.api.post(connection_id, encode(msg, vsn))

    def reply(self, frame: Frame, msg: m.Message) -> None:
        record_reply(frame.msg, msg)
        self.send(frame.connection_id, frame.vsn, msg)

    # -- events ---------------------------------------------------------------------------------
    def heartbeat(self, frame: Frame) -> None:
        self.store.touch(frame.connection_id, time.time())
        self.reply(frame, m.ok(frame.msg))

    def join(self, frame: Frame) -> None:
        msg = frame.msg
        if msg.topic == m.PHOENIX_TOPIC:
            self.reply(frame, m.error(msg, "InvalidTopic: cannot join the phoenix topic"))
            return
        # A join of a topic already joined ends the old channel first, as Phoenix does: a rejoin
        # that then fails leaves nothing subscribed, and its tracked presence is announced gone.
        drop_channel(self.store, self.api, frame.connection_id, msg.topic)
        payload = msg.payload if isinstance(msg.payload, dict) else None
        config = payload.get("config", {}) if payload is not None else None
        if not isinstance(config, dict):
            self.reply(frame, m.error(msg, "InvalidJoinPayload: expected {\"config\": {...}}"))
            return
        params = config.get("postgres_changes") or []
        try:
            shown = echo(params)
            options = ChannelOptions.parse(config)
        except (SubscriptionError, ValueError) as exc:
            self.reply(frame, m.error(msg, f"InvalidJoinPayload: {exc}"))
            return
        try:
            connection = self.store.enter_channel(frame.connection_id, msg.topic,
                                                  self.config.max_channels_per_connection)
        except NoConnection:
            self.reply(frame, m.error(msg, "UnknownConnection: this connection is not registered"))
            return
        except TooManyChannels:
            self.reply(frame, m.error(msg, "ChannelRateLimitReached: Too many channels"))
            return
        try:
            claims = self._channel_claims(payload, connection.claims)
        except AuthError as exc:
            self.store.leave_channel(frame.connection_id, msg.topic)
            self.reply(frame, m.error(msg, f"InvalidJWTToken: {exc}"))
            return
        join_ref = msg.join_ref or msg.ref
        member = Member(
            connection_id=frame.connection_id, topic=msg.topic, vsn=frame.vsn, join_ref=join_ref,
            broadcast_self=options.broadcast_self, broadcast_ack=options.broadcast_ack,
            presence_key=options.presence_key or new_ref(), private=options.private,
            role=claims.role, claims=codec.dumps(claims.raw), exp=claims.exp,
            # Writing to a private channel is checked on the first send, as Supabase does.
            can_broadcast=None if options.private else True, can_track=None if options.private else True)
        if options.private and not self._may_read(member):
            self.store.leave_channel(frame.connection_id, msg.topic)
            self.reply(frame, m.error(msg, _read_denied(member)))
            return
        try:
            sub = subscribe(params, db=self.db(), connection_id=frame.connection_id, topic=msg.topic,
                            vsn=frame.vsn, role=claims.role, claims=claims.raw, exp=claims.exp,
                            join_ref=join_ref, max_bindings=self.config.max_bindings_per_channel)
            failure = None
        except SubscriptionError as exc:
            sub, failure = None, str(exc)
        self.store.add_bindings(sub.bindings if sub else [], sub.indexed if sub else {}, connection.expires_at)
        self.store.put_member(member, connection.expires_at)
        self.reply(frame, m.ok(msg, {"postgres_changes": sub.echo if sub else shown}))
        if options.presence_enabled:
            self.reply(frame, m.Message(topic=msg.topic, event="presence_state",
                                        payload=presence_state(self.store.members(msg.topic), options.private),
                                        join_ref=msg.join_ref))
        if failure is not None:
            self.reply(frame, m.system(msg.topic, "postgres_changes", "error", failure, msg.join_ref))
        elif sub.bindings:
            self.reply(frame, m.system(msg.topic, "postgres_changes", "ok", "Subscribed to PostgreSQL",
                                       msg.join_ref))

    def leave(self, frame: Frame) -> None:
        # Removed before the reply: once the client reads "ok", nothing more reaches the channel.
        drop_channel(self.store, self.api, frame.connection_id, frame.msg.topic)
        self.reply(frame, m.ok(frame.msg))

    def broadcast(self, frame: Frame) -> None:
        """A client's broadcast: to every member of the topic (the sender only with `self`)."""
        msg = frame.msg
        payload = msg.payload if isinstance(msg.payload, dict) else None
        if payload is None or not isinstance(payload.get("event"), str):
            self.reply(frame, m.error(msg, "InvalidMessage: broadcast needs {type, event, payload}"))
            return
        if not self._admit(frame, self.config.max_broadcast_bytes):
            return
        members = self.store.members(msg.topic)
        sender = next((x for x in members if x.connection_id == frame.connection_id), None)
        if sender is None:
            self.reply(frame, m.error(msg, "unmatched topic"))
            return
        if not self._live(sender):
            return
        if not self._may_write(sender, "broadcast"):
            # A private channel whose policies deny this member writing: the message is dropped.
            if sender.broadcast_ack:
                self.reply(frame, m.error(msg, _write_denied(sender)))
            return
        audience = [x for x in members if x.private == sender.private]
        relay_to_members(self.store, self.api, audience,
                         broadcast_message(msg.topic, payload["event"], payload.get("payload")),
                         exclude=None if sender.broadcast_self else frame.connection_id)
        if sender.broadcast_ack:
            self.reply(frame, m.ok(msg))

    def presence(self, frame: Frame) -> None:
        """`track` / `untrack`: store this connection's meta and announce the diff to the topic."""
        msg = frame.msg
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        event = payload.get("event")
        if event not in ("track", "untrack"):
            self.reply(frame, m.error(msg, "InvalidMessage: presence event must be track or untrack"))
            return
        meta = payload.get("payload", {})
        if event == "track" and not isinstance(meta, dict):
            self.reply(frame, m.error(msg, "InvalidMessage: presence payload must be an object"))
            return
        if event == "track" and len(meta) > self.config.max_presence_keys:
            self.reply(frame, m.error(msg, f"PresenceKeysLimitReached: a presence payload may have at most "
                                           f"{self.config.max_presence_keys} keys"))
            return
        if not self._admit(frame, self.config.max_presence_bytes):
            return
        member = self.store.member(frame.connection_id, msg.topic)
        if member is None:
            self.reply(frame, m.error(msg, "unmatched topic"))
            return
        if not self._live(member):
            return
        if not self._may_write(member, "presence"):
            self.reply(frame, m.error(msg, _write_denied(member)))
            return
        old = member.presence
        if event == "track":
            new = {**meta, "phx_ref": new_ref()}
            if old is not None:
                new["phx_ref_prev"] = old["phx_ref"]
            self.store.set_presence(frame.connection_id, msg.topic, new)
            change = presence_diff(member.presence_key, [new], [old] if old else [])
        elif old is not None:
            self.store.set_presence(frame.connection_id, msg.topic, None)
            change = presence_diff(member.presence_key, [], [old])
        else:
            change = None
        self.reply(frame, m.ok(msg))
        if change is not None:
            announce(self.store, self.api, msg.topic, member.private, change)

    def access_token(self, frame: Frame) -> None:
        """A refreshed (or replaced) user token for a channel: verify it, then re-authorize.

        Invalid or expired: the channel is closed with a `system` error and `phx_close`, as
        Supabase does. Valid: the channel takes the new role and claims — its bindings, and its
        membership for broadcast and presence — provided they may still read what the channel
        subscribed to: every table and filtered or selected column, and on a private channel
        the topic itself. Otherwise the channel is closed the same way.
        """
        msg = frame.msg
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        member, bindings = self.store.channel(frame.connection_id, msg.topic)
        if member is None:
            return  # not joined: nothing to re-authorize
        try:
            claims = verify(payload.get("access_token"))
        except AuthError as exc:
            self._close(member, f"InvalidJWTToken: {exc}")
            return
        claims_text = codec.dumps(claims.raw)
        if member.claims == claims_text and all(b.claims == claims_text for b in bindings):
            return
        problem = recheck(self.db(), bindings, claims.role)
        if problem is not None:
            self._close(member, problem)
            return
        renewed = replace(member, role=claims.role, claims=claims_text, exp=claims.exp,
                          can_broadcast=None if member.private else True,
                          can_track=None if member.private else True)
        if member.private and not self._may_read(renewed):
            self._close(member, _read_denied(member))
            return
        connection = self.store.get_connection(frame.connection_id)
        expires_at = connection.expires_at if connection else int(time.time()) + self.config.connection_ttl_seconds
        if bindings:
            self.store.put_bindings([replace(b, role=claims.role, claims=claims_text, exp=claims.exp)
                                     for b in bindings], expires_at)
        self.store.put_member(renewed, expires_at)

    def _admit(self, frame: Frame, max_bytes: int) -> bool:
        """The size and rate limits every client message passes; False (answered) if it fails one."""
        if frame.size > max_bytes:
            self.reply(frame, m.reply(frame.msg, "error", {"error": "payload_size_exceeded"}))
            return False
        if not self.store.spend(frame.connection_id, self.config.max_events_per_second, time.time()):
            self.reply(frame, m.error(frame.msg, "MessagePerSecondRateLimitReached: Too many messages per second"))
            return False
        return True

    # -- authorization of one member ------------------------------------------------------------
    def _live(self, member: Member) -> bool:
        """False (and the channel closed, telling the client why) once the channel's token expired."""
        now = time.time()
        if member.live(now):
            return True
        self._close(member, expired_reason(member.exp, now))
        return False

    def _may_read(self, member: Member) -> bool:
        access = channel_access(self.db(), member.role, codec.loads(member.claims), member.channel)
        return access.read_broadcast or access.read_presence

    def _may_write(self, member: Member, extension: str) -> bool:
        """Whether `member` may send on its channel: always on public channels; on private ones
        as realtime.messages' INSERT policies say, evaluated on the first send and remembered."""
        known = member.can_broadcast if extension == "broadcast" else member.can_track
        if known is not None:
            return known
        access = channel_access(self.db(), member.role, codec.loads(member.claims), member.channel)
        self.store.set_write_access(member.connection_id, member.topic,
                                    access.write_broadcast, access.write_presence)
        return access.write_broadcast if extension == "broadcast" else access.write_presence

    def _close(self, member: Member, reason: str) -> None:
        close_channel(self.store, self.api, member.connection_id, member.topic, member.vsn,
                      member.join_ref, reason)

    def _channel_claims(self, payload: dict, connection_claims: str) -> Claims:
        token = payload.get("access_token")
        if token:
            return verify(token)
        raw = codec.loads(connection_claims)
        return Claims(role=raw.get("role", "anon"), exp=int(raw.get("exp", 0)), raw=raw)

    actions = {
        "heartbeat": heartbeat,
        "phx_join": join,
        "phx_leave": leave,
        "access_token": access_token,
        "broadcast": broadcast,
        "presence": presence,
    }


def _read_denied(member: Member) -> str:
    return f"Unauthorized: You do not have permissions to read from this Channel topic: {member.channel}"


def _write_denied(member: Member) -> str:
    return f"Unauthorized: You do not have permissions to write to this Channel topic: {member.channel}"


@lru_cache(maxsize=1)
def router() -> Router:
    return Router(store=store(), api=connections_api(), config=settings())


def on_frame(event: WebSocketEvent) -> dict:
    """Lambda entry for `$default`: always 200; errors go back to the client as protocol frames."""
    try:
        router().handle(event.connection_id, event.body)
    except Gone:
        depart(store(), connections_api(), event.connection_id)
    except Exception:
        logger.exception("frame failed", extra={"connection_id": event.connection_id})
        raise
    return response(200)
