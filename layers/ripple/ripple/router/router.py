"""The `$default` route: one client frame in, replies and pushes out through `@connections`.

The router decodes the frame, dispatches it by event and renders every refusal (a ChannelError)
as the error reply Supabase sends. It owns the channel's lifecycle — join, leave, heartbeat,
access_token; broadcast and presence frames go to their features. The serializer is read off the
frame itself (V2 frames are JSON arrays, V1 frames objects), so a heartbeat costs no lookup.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from ripple import codec
from ripple.auth.jwt import AuthError, Claims, verify
from ripple.broadcast import replay as broadcast_replay
from ripple.broadcast.client import broadcast
from ripple.changes import replay as changes_replay
from ripple.changes.subscription import (
    Subscriber,
    Subscription,
    SubscriptionError,
    echo,
    recheck,
    subscribe,
)
from ripple.channels.closing import drop_channel
from ripple.channels.context import Context, Frame
from ripple.channels.lifecycle import depart
from ripple.channels.window import window
from ripple.config import settings
from ripple.db import Database, database
from ripple.events import MessageEvent, response
from ripple.gateway import Gone, connections_api
from ripple.log import logger
from ripple.metrics import record_frame
from ripple.presence.tracking import presence
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError, unauthorized_read
from ripple.protocol.join import JoinPayload
from ripple.protocol.presence import new_ref, state
from ripple.protocol.serializer import V1, V2, FrameError, decode
from ripple.store import Connection, Entered, Member, NoConnection, TooManyChannels, store


@dataclass
class Router(Context):
    db: Callable[[], Database] = database

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
        try:
            _check_topic(msg.topic)
            action = ACTIONS.get(msg.event)
            if action is None:
                raise ChannelError("UnknownEvent", f"unknown event {msg.event!r}")
            action(self, frame)
        except ChannelError as exc:
            self.reply(frame, exc.reply(msg))
        except Gone:
            raise
        except Exception:
            # A bug or an outage must still answer the client in the protocol, never with
            # API Gateway's bare "Internal server error".
            logger.exception("frame failed", extra={"connection_id": connection_id, "event": msg.event})
            self.reply(frame, m.error(msg, "InternalError: the server could not handle this message"))

    def heartbeat(self, frame: Frame) -> None:
        self.store.touch(frame.connection_id, time.time())
        self.reply(frame, m.ok(frame.msg))

    def join(self, frame: Frame) -> None:
        msg = frame.msg
        if msg.topic == m.PHOENIX_TOPIC:
            raise ChannelError("InvalidTopic", "cannot join the phoenix topic")
        entered = self._enter(frame)
        joined = False
        try:
            if entered.rejoin:
                # A join of a topic already joined ends the old channel first, as Phoenix does: a
                # rejoin that then fails leaves nothing subscribed, and its tracked presence is
                # announced gone. The topic stays counted: this join holds it now. A topic the
                # connection never counted has no channel to end, and costs no lookup.
                drop_channel(self.store, self.api, frame.connection_id, msg.topic, keep_place=True)
            payload = JoinPayload.parse(msg.payload)
            wants = payload.config.broadcast
            replaying = wants.replay is not None or wants.replay_changes is not None
            if replaying and not self.store.spend(frame.connection_id, self.config.max_events_per_second,
                                                  time.time()):
                # A replay posts many frames for one: it counts as a message against the rate limit.
                raise ChannelError("MessagePerSecondRateLimitReached", "Too many messages per second")
            # With a replay, the drain is held from before the member is stored until the replay
            # is posted: each message arrives exactly once, replayed or live.
            with window(self.db, replaying) as open_window:
                member, sub, failure = self._join(frame, payload, entered.connection)
                joined = True
                if open_window is not None and wants.replay is not None:
                    broadcast_replay.replay(open_window, self.api, member, wants.replay)
                if open_window is not None and wants.replay_changes is not None:
                    changes_replay.replay(open_window, self.api, sub, member, wants.replay_changes)
        except Exception:
            if not joined:
                # Refused: the topic goes back from the connection's channel count.
                self.store.leave_channel(frame.connection_id, msg.topic)
            raise
        self._announce(frame, member, sub, failure)
        if payload.config.broadcast.replication_ready:
            # The bindings are stored with consistent writes: the next change will find them.
            self.reply(frame, m.system(msg.topic, "system", "ok", "Replication connection established",
                                       msg.join_ref))

    def _join(self, frame: Frame, payload: JoinPayload, connection: Connection
              ) -> tuple[Member, Subscription | None, str | None]:
        """Store the channel's membership and bindings, and answer the join (with the presence
        state when asked); returns them and why bindings were refused, if they were."""
        msg = frame.msg
        shown = echo(payload.config.postgres_changes)
        if not self.store.spend(frame.connection_id, self.config.max_joins_per_second, time.time(), "join"):
            raise ChannelError("ClientJoinRateLimitReached", "Too many joins per second")
        member = self._member(frame, payload, connection)
        if payload.config.broadcast.replay is not None and not member.sees_broadcast:
            raise unauthorized_read(member.channel)
        sub, failure = self._subscribe(payload.config.postgres_changes, member)
        if sub is not None and payload.config.broadcast.replay_changes is not None:
            sub.bindings = [replace(b, positions=True) for b in sub.bindings]
        if failure is not None:
            member = replace(member, refused=codec.dumps(payload.config.postgres_changes))
        try:
            self.store.add_bindings(sub.bindings if sub else [], sub.indexed if sub else {},
                                    connection.expires_at)
            self.store.put_member(member, connection.expires_at)
        except Exception:
            # Whatever was written before the failure goes: a later join of the topic, not
            # finding it counted, would not look for it.
            self.store.remove_channel(frame.connection_id, msg.topic)
            raise
        self.reply(frame, m.ok(msg, {"postgres_changes": sub.echo if sub else shown}))
        if payload.config.presence.enabled and member.sees_presence:
            tracked = [(x.presence_key, x.presence) for x in self.store.members(msg.topic)
                       if x.presence is not None and x.private == member.private]
            self.reply(frame, m.Message(topic=msg.topic, event="presence_state", payload=state(tracked),
                                        join_ref=msg.join_ref))
        return member, sub, failure

    def _announce(self, frame: Frame, member: Member, sub: Subscription | None, failure: str | None) -> None:
        """Tell the client how its postgres_changes bindings fared, as Supabase's `system` message."""
        if failure is not None:
            self.send(frame.connection_id, member.vsn,
                      m.system(member.topic, "postgres_changes", "error", failure, member.join_ref))
        elif sub is not None and sub.bindings:
            self.send(frame.connection_id, member.vsn,
                      m.system(member.topic, "postgres_changes", "ok", "Subscribed to PostgreSQL", member.join_ref))

    def _enter(self, frame: Frame) -> Entered:
        try:
            return self.store.enter_channel(frame.connection_id, frame.msg.topic,
                                            self.config.max_channels_per_connection)
        except NoConnection:
            raise ChannelError("UnknownConnection", "this connection is not registered") from None
        except TooManyChannels:
            raise ChannelError("ChannelRateLimitReached", "Too many channels") from None

    def _member(self, frame: Frame, payload: JoinPayload, connection: Connection) -> Member:
        """The joining channel's membership, under the join's token or else the connection's;
        raises ChannelError if the token is refused or a private topic may not be read."""
        try:
            claims = _claims(payload.access_token, connection.claims)
        except AuthError as exc:
            raise ChannelError("InvalidJWTToken", str(exc)) from None
        config, msg = payload.config, frame.msg
        member = Member(
            connection_id=frame.connection_id, topic=msg.topic, vsn=frame.vsn,
            join_ref=msg.join_ref or msg.ref, broadcast_self=config.broadcast.echo_self,
            broadcast_ack=config.broadcast.ack, presence_key=config.presence.key or new_ref(),
            private=config.private, role=claims.role, claims=codec.dumps(claims.raw), exp=claims.exp,
            # Writing to a private channel is checked on the first send, as Supabase does.
            can_broadcast=None if config.private else True, can_track=None if config.private else True,
            log_ids=config.broadcast.replay is not None)
        return self.with_reads(member)

    def _subscribe(self, params: list[dict], member: Member) -> tuple[Subscription | None, str | None]:
        """The channel's postgres_changes bindings, or why they were refused."""
        subscriber = Subscriber(connection_id=member.connection_id, topic=member.topic, vsn=member.vsn,
                                role=member.role, claims=codec.loads(member.claims), exp=member.exp,
                                join_ref=member.join_ref)
        try:
            return subscribe(params, catalog=self.catalog, subscriber=subscriber,
                             max_bindings=self.config.max_bindings_per_channel), None
        except SubscriptionError as exc:
            return None, str(exc)

    def leave(self, frame: Frame) -> None:
        # Removed before the reply: once the client reads "ok", nothing more reaches the channel.
        drop_channel(self.store, self.api, frame.connection_id, frame.msg.topic)
        self.reply(frame, m.ok(frame.msg))

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
            self.close(member, f"InvalidJWTToken: {exc}")
            return
        claims_text = codec.dumps(claims.raw)
        if member.claims == claims_text and all(b.claims == claims_text for b in bindings) \
                and member.refused is None:
            return
        problem = recheck(self.catalog, bindings, claims.role)
        renewed = replace(member, role=claims.role, claims=claims_text, exp=claims.exp,
                          can_broadcast=None if member.private else True,
                          can_track=None if member.private else True)
        if problem is None:
            try:
                renewed = self.with_reads(renewed)
            except ChannelError as exc:
                problem = exc.reason
        if problem is not None:
            self.close(member, problem)
            return
        connection = self.store.get_connection(frame.connection_id)
        expires_at = connection.expires_at if connection else int(time.time()) + self.config.connection_ttl_seconds
        if bindings:
            self.store.put_bindings([replace(b, role=claims.role, claims=claims_text, exp=claims.exp)
                                     for b in bindings], expires_at)
        if renewed.refused is None:
            self.store.put_member(renewed, expires_at)
            return
        # Bindings refused at join get another chance under the new claims, as Supabase does.
        sub, failure = self._subscribe(codec.loads(renewed.refused), renewed)
        if sub is not None:
            self.store.add_bindings(sub.bindings, sub.indexed, expires_at)
            renewed = replace(renewed, refused=None)
        self.store.put_member(renewed, expires_at)
        self._announce(frame, renewed, sub, failure)


# Topics become DynamoDB keys (2 KB partition keys, 1 KB sort keys with the connection id) and
# Postgres text (no NUL): longer topics or control characters are refused.
MAX_TOPIC_BYTES = 512


def _check_topic(topic: str) -> None:
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise ChannelError("InvalidTopic", f"a topic is at most {MAX_TOPIC_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in topic):
        raise ChannelError("InvalidTopic", "a topic cannot hold control characters")


def _claims(token: object, connection_claims: str) -> Claims:
    if token:
        return verify(token if isinstance(token, str) else None)
    raw = codec.loads(connection_claims)
    return Claims(role=raw.get("role", "anon"), exp=int(raw.get("exp", 0)), raw=raw)


ACTIONS: dict[str, Callable[[Router, Frame], None]] = {
    "heartbeat": Router.heartbeat,
    "phx_join": Router.join,
    "phx_leave": Router.leave,
    "access_token": Router.access_token,
    "broadcast": broadcast,
    "presence": presence,
}


@lru_cache(maxsize=1)
def router() -> Router:
    return Router(store=store(), api=connections_api(), config=settings())


def on_frame(event: MessageEvent) -> dict:
    """Lambda entry for `$default`: always 200; errors go back to the client as protocol frames."""
    try:
        router().handle(event.connection_id, event.text)
    except Gone:
        depart(store(), connections_api(), event.connection_id)
    except Exception:
        logger.exception("frame failed", extra={"connection_id": event.connection_id})
        raise
    return response(200)
