"""A client's `broadcast` frame: relayed to every member of the topic (the sender only with
`self`), acknowledged with `ack`, gated by size, rate and, on private channels, write policies."""
from __future__ import annotations

from ripple.channels.audience import deliver
from ripple.channels.context import Context, Frame
from ripple.protocol import errors
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError


def broadcast(ctx: Context, frame: Frame) -> None:
    msg = frame.msg
    payload = msg.payload if isinstance(msg.payload, dict) else None
    if payload is None or not isinstance(payload.get("event"), str):
        raise ChannelError("InvalidMessage", "broadcast needs {type, event, payload}")
    ctx.admit(frame, ctx.config.max_broadcast_bytes)
    # One Query finds the audience and the sender's own membership.
    members = ctx.store.members(msg.topic)
    sender = next((x for x in members if x.connection_id == frame.connection_id), None)
    if sender is None:
        raise errors.unmatched_topic()
    if not ctx.live(sender):
        return
    if not ctx.may_write(sender, "broadcast"):
        # A private channel whose policies deny this member writing: the message is dropped.
        if sender.broadcast_ack:
            raise errors.unauthorized_write(sender.channel)
        return
    audience = [x for x in members if x.private == sender.private and x.sees_broadcast]
    deliver(ctx.store, ctx.api, audience, m.broadcast(msg.topic, payload["event"], payload.get("payload")),
            exclude=None if sender.broadcast_self else frame.connection_id)
    if sender.broadcast_ack:
        ctx.reply(frame, m.ok(msg))
