"""Relay one message to the members of a topic: one Query for the members, one post each."""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ripple.channels.member import Member
from ripple.gateway import ConnectionsApi, Delivery, Outcome
from ripple.protocol.message import Message
from ripple.protocol.serializer import encode


def broadcast_message(topic: str, event: str, payload: Any) -> Message:
    """The `broadcast` push every client library understands."""
    return Message(topic=topic, event="broadcast",
                   payload={"type": "broadcast", "event": event, "payload": payload})


def relay(api: ConnectionsApi, members: Iterable[Member], message: Message,
          exclude: str | None = None) -> Outcome:
    """Post `message` to every member except `exclude` and those whose token has expired,
    encoding it once per serializer version."""
    encoded: dict[str, str] = {}
    deliveries = []
    now = time.time()
    for member in members:
        if member.connection_id == exclude or not member.live(now):
            continue
        if member.vsn not in encoded:
            encoded[member.vsn] = encode(message, member.vsn)
        deliveries.append(Delivery(member.connection_id, [encoded[member.vsn]]))
    return api.deliver(deliveries)
