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
from ripple.changes.subscription import SubscriptionError, echo, readable, subscribe
from ripple.config import Settings, settings
from ripple.db import database
from ripple.events import WebSocketEvent, response
from ripple.gateway import ConnectionsApi, Gone, connections_api
from ripple.log import logger
from ripple.protocol import message as m
from ripple.protocol.serializer import V1, V2, FrameError, decode, encode
from ripple.store import Store, store


@dataclass
class Frame:
    """One decoded frame and where its answers go."""

    connection_id: str
    vsn: str
    msg: m.Message


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
        frame = Frame(connection_id, vsn, msg)
        action = self.actions.get(msg.event)
        if action is None:
            self.reply(frame, m.error(msg, f"UnknownEvent: unknown event {msg.event!r}"))
            return
        action(self, frame)

    # -- sending --------------------------------------------------------------------------------
    def send(self, connection_id: str, vsn: str, msg: m.Message) -> None:
        self.api.post(connection_id, encode(msg, vsn))

    def reply(self, frame: Frame, msg: m.Message) -> None:
        self.send(frame.connection_id, frame.vsn, msg)

    # -- events ---------------------------------------------------------------------------------
    def heartbeat(self, frame: Frame) -> None:
        self.reply(frame, m.ok(frame.msg))

    def join(self, frame: Frame) -> None:
        msg = frame.msg
        if msg.topic == m.PHOENIX_TOPIC:
            self.reply(frame, m.error(msg, "InvalidTopic: cannot join the phoenix topic"))
            return
        payload = msg.payload if isinstance(msg.payload, dict) else None
        config = payload.get("config", {}) if payload is not None else None
        if not isinstance(config, dict):
            self.reply(frame, m.error(msg, "InvalidJoinPayload: expected {\"config\": {...}}"))
            return
        params = config.get("postgres_changes") or []
        try:
            shown = echo(params)
        except SubscriptionError as exc:
            self.reply(frame, m.error(msg, f"InvalidJoinPayload: {exc}"))
            return
        connection = self.store.get_connection(frame.connection_id)
        if connection is None:
            self.reply(frame, m.error(msg, "UnknownConnection: this connection is not registered"))
            return
        try:
            claims = self._channel_claims(payload, connection.claims)
        except AuthError as exc:
            self.reply(frame, m.error(msg, f"InvalidJWTToken: {exc}"))
            return
        try:
            sub = subscribe(params, db=self.db(), connection_id=frame.connection_id, topic=msg.topic,
                            vsn=frame.vsn, role=claims.role, claims=claims.raw, exp=claims.exp,
                            join_ref=msg.join_ref or msg.ref,
                            max_bindings=self.config.max_bindings_per_channel)
        except SubscriptionError as exc:
            self.store.remove_channel(frame.connection_id, msg.topic)
            self.reply(frame, m.ok(msg, {"postgres_changes": shown}))
            self.reply(frame, m.system(msg.topic, "postgres_changes", "error", str(exc), msg.join_ref))
            return
        self.store.replace_channel(frame.connection_id, msg.topic, sub.bindings, sub.indexed,
                                   connection.expires_at)
        self.reply(frame, m.ok(msg, {"postgres_changes": sub.echo}))
        if sub.bindings:
            self.reply(frame, m.system(msg.topic, "postgres_changes", "ok", "Subscribed to PostgreSQL",
                                       msg.join_ref))

    def leave(self, frame: Frame) -> None:
        self.store.remove_channel(frame.connection_id, frame.msg.topic)
        self.reply(frame, m.ok(frame.msg))

    def access_token(self, frame: Frame) -> None:
        """A refreshed (or replaced) user token for a channel: verify it, then re-authorize.

        Invalid or expired: the channel is closed with a `system` error and `phx_close`, as
        Supabase does. Valid: the channel's bindings take the new role and claims, provided the
        new role may still read every table they name.
        """
        msg = frame.msg
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        try:
            claims = verify(payload.get("access_token"))
        except AuthError as exc:
            self._close_channel(frame, f"InvalidJWTToken: {exc}")
            return
        bindings = self.store.channel_bindings(frame.connection_id, msg.topic)
        claims_text = codec.dumps(claims.raw)
        if not bindings or all(b.claims == claims_text for b in bindings):
            return
        tables = sorted({(b.schema, b.table) for b in bindings if "*" not in (b.schema, b.table)})
        unreadable = [f"{s}.{t}" for s, t in tables if not readable(self.db(), s, t, claims.role)]
        if unreadable:
            self._close_channel(frame, f"Error 401: Unauthorized: role {claims.role!r} cannot read "
                                       f"{', '.join(unreadable)}")
            return
        connection = self.store.get_connection(frame.connection_id)
        expires_at = connection.expires_at if connection else int(time.time()) + self.config.connection_ttl_seconds
        self.store.put_bindings([replace(b, role=claims.role, claims=claims_text, exp=claims.exp)
                                 for b in bindings], expires_at)

    def _close_channel(self, frame: Frame, reason: str) -> None:
        topic, join_ref = frame.msg.topic, frame.msg.join_ref
        self.store.remove_channel(frame.connection_id, topic)
        self.reply(frame, m.system(topic, "system", "error", reason, join_ref))
        self.reply(frame, m.Message(topic=topic, event="phx_close", payload={}, join_ref=join_ref))

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
    }


@lru_cache(maxsize=1)
def router() -> Router:
    return Router(store=store(), api=connections_api(), config=settings())


def on_frame(event: WebSocketEvent) -> dict:
    """Lambda entry for `$default`: always 200; errors go back to the client as protocol frames."""
    try:
        router().handle(event.connection_id, event.body)
    except Gone:
        store().delete_connection(event.connection_id)
    except Exception:
        logger.exception("frame failed", extra={"connection_id": event.connection_id})
        raise
    return response(200)
