"""Post one message to the members of a topic: encoded once per serializer, one post each."""
from __future__ import annotations

import time
from collections.abc import Iterable

from ripple.gateway import ConnectionsApi, Delivery, Outcome
from ripple.protocol.message import Message
from ripple.protocol.serializer import encode
from ripple.store import Member


def relay(api: ConnectionsApi, members: Iterable[Member], message: Message,
          exclude: str | None = None) -> Outcome:
    """Post `message` to every member except `exclude` and those whose token has expired."""
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
