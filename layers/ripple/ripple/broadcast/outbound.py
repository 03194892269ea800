"""Server-side broadcasts (REST API and `realtime.send`): validated messages to topic members."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ripple.channels.audience import deliver
from ripple.gateway import MAX_FRAME_BYTES, ConnectionsApi
from ripple.log import logger
from ripple.protocol.message import broadcast
from ripple.protocol.serializer import VERSIONS, encode
from ripple.store import Store


class OutboundMessage(BaseModel):
    """One message of `POST /realtime/v1/api/broadcast`, or one `realtime.send` call."""

    model_config = ConfigDict(extra="ignore")

    topic: str = Field(min_length=1, max_length=255)
    event: str = Field(min_length=1, max_length=255)
    payload: Any = None
    private: bool = False


class BroadcastRequest(BaseModel):
    messages: list[OutboundMessage] = Field(min_length=1, max_length=100)


class InvalidRequest(ValueError):
    """A request body that cannot be sent; str() is the client-facing reason."""


def parse_request(body: Any) -> BroadcastRequest:
    try:
        return BroadcastRequest.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(problems) from None


def frame_bytes(message: OutboundMessage) -> int:
    """The size of the `broadcast` push this message becomes, in its larger serialization."""
    push = broadcast(f"realtime:{message.topic}", message.event, message.payload)
    return max(len(encode(push, vsn).encode()) for vsn in VERSIONS)


@dataclass(frozen=True)
class Oversize:
    """A message whose push would exceed API Gateway's message quota."""

    index: int
    topic: str
    bytes: int

    def describe(self) -> dict:
        return {"index": self.index, "topic": self.topic, "error": "payload_size_exceeded",
                "bytes": self.bytes, "limit": MAX_FRAME_BYTES}


def oversize(messages: list[OutboundMessage]) -> list[Oversize]:
    """The messages that cannot be delivered for their size (none, usually)."""
    found = []
    for index, message in enumerate(messages):
        size = frame_bytes(message)
        if size > MAX_FRAME_BYTES:
            found.append(Oversize(index, message.topic, size))
    return found


@dataclass
class Sent:
    messages: int = 0
    deliveries: int = 0
    oversize: int = 0


def send(store: Store, api: ConnectionsApi, messages: list[OutboundMessage],
         ids: list[str] | None = None) -> Sent:
    """Deliver each message to the members of `realtime:<topic>` joined with the same `private`;
    with `ids` (their message-log positions), pushes to members that joined with a replay config
    carry `meta: {"id": ...}`.

    A message too large for API Gateway is not sent: it is logged as an error with its topic and
    counted in `oversize` (the REST API refuses such requests before they get here).
    """
    sent = Sent()
    too_large = {o.index: o for o in oversize(messages)}
    for index, message in enumerate(messages):
        if index in too_large:
            logger.error("broadcast dropped: payload_size_exceeded",
                         extra={"topic": message.topic, "event": message.event,
                                "bytes": too_large[index].bytes, "limit": MAX_FRAME_BYTES})
            sent.oversize += 1
            continue
        topic = f"realtime:{message.topic}"
        members = [m for m in store.members(topic) if m.private == message.private and m.sees_broadcast]
        sent.messages += 1
        # Only members that joined with a replay config read ids; the rest get Supabase's
        # plain push.
        tagged = [x for x in members if x.log_ids] if ids is not None else []
        plain = [x for x in members if not x.log_ids] if ids is not None else members
        if tagged:
            meta = {"id": ids[index]} if ids is not None else None
            sent.deliveries += deliver(store, api, tagged, broadcast(topic, message.event, message.payload,
                                                                     meta)).delivered
        if plain:
            sent.deliveries += deliver(store, api, plain, broadcast(topic, message.event, message.payload)).delivered
    return sent


def relay_outbox(store: Store, api: ConnectionsApi, payloads: list[Any], ids: list[str]) -> Sent:
    """Deliver `realtime.send` messages drained from the outbox, each tagged with its log position
    (`ids`); a malformed one is logged and skipped, never holding up the rest."""
    messages, kept = [], []
    for payload, position in zip(payloads, ids):
        try:
            messages.append(OutboundMessage.model_validate(payload))
            kept.append(position)
        except ValueError:
            logger.warning("dropping malformed realtime.send message", extra={"payload": payload})
    return send(store, api, messages, kept)
