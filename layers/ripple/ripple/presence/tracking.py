"""A client's `presence` frame (`track` / `untrack`): its meta is stored on its membership and the
diff announced to the topic, as Phoenix Presence does."""
from __future__ import annotations

from typing import Any

from ripple.channels.context import Context, Frame
from ripple.channels.lifecycle import announce
from ripple.protocol import errors
from ripple.protocol import message as m
from ripple.protocol.errors import ChannelError
from ripple.protocol.presence import diff, new_ref


def presence(ctx: Context, frame: Frame) -> None:
    msg = frame.msg
    payload = msg.payload if isinstance(msg.payload, dict) else {}
    event = payload.get("event")
    meta = _meta(ctx, event, payload.get("payload", {}))
    ctx.admit(frame, ctx.config.max_presence_bytes)
    member = ctx.member(frame)
    if member is None:
        return
    if not ctx.may_write(member, "presence"):
        raise errors.unauthorized_write(member.channel)
    old = member.presence
    change = None
    if event == "track":
        new = {**meta, "phx_ref": new_ref()}
        if old is not None:
            new["phx_ref_prev"] = old["phx_ref"]
        ctx.store.set_presence(frame.connection_id, msg.topic, new)
        change = diff(member.presence_key, [new], [old] if old else [])
    elif old is not None:
        ctx.store.set_presence(frame.connection_id, msg.topic, None)
        change = diff(member.presence_key, [], [old])
    ctx.reply(frame, m.ok(msg))
    if change is not None:
        announce(ctx.store, ctx.api, msg.topic, member.private, change)


def _meta(ctx: Context, event: Any, meta: Any) -> dict[str, Any]:
    """The meta a `track` stores (empty for `untrack`); raises ChannelError on a bad one."""
    if event not in ("track", "untrack"):
        raise ChannelError("InvalidMessage", "presence event must be track or untrack")
    if event == "untrack":
        return {}
    if not isinstance(meta, dict):
        raise ChannelError("InvalidMessage", "presence payload must be an object")
    if len(meta) > ctx.config.max_presence_keys:
        raise ChannelError("PresenceKeysLimitReached",
                           f"a presence payload may have at most {ctx.config.max_presence_keys} keys")
    return meta
