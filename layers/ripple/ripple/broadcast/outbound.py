"""Server-side broadcasts (REST API and `realtime.send`): validated messages to topic members."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ripple.broadcast.relay import broadcast_message, relay
from ripple.gateway import ConnectionsApi
from ripple.presence.tracker import depart
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


@dataclass
class Sent:
    messages: int = 0
    deliveries: int = 0


def send(store: Store, api: ConnectionsApi, messages: list[OutboundMessage]) -> Sent:
    """Deliver each message to the members of `realtime:<topic>` joined with the same `private`."""
    sent = Sent()
    for message in messages:
        topic = f"realtime:{message.topic}"
        members = [m for m in store.members(topic) if m.private == message.private]
        outcome = relay(api, members, broadcast_message(topic, message.event, message.payload))
        for connection_id in outcome.gone:
            depart(store, api, connection_id)
        sent.messages += 1
        sent.deliveries += outcome.delivered
    return sent
