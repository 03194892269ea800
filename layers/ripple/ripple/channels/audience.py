"""Delivering one message to a topic's members, and what the posts find: connections gone
(410) depart, channels whose token has expired are closed so the client hears why."""
from __future__ import annotations

import time

from ripple.channels.closing import Expired, close_expired
from ripple.channels.lifecycle import depart_gone
from ripple.channels.relay import relay
from ripple.gateway import ConnectionsApi, Outcome
from ripple.protocol.message import Message
from ripple.store import Member, Store


def deliver(store: Store, api: ConnectionsApi, members: list[Member], message: Message,
            exclude: str | None = None) -> Outcome:
    """Relay `message` to the live members except `exclude`, then settle what the posts found."""
    now = time.time()
    outcome = relay(api, members, message, exclude=exclude)
    depart_gone(store, api, outcome)
    close_expired(store, api, (Expired(x.connection_id, x.topic, x.vsn, x.join_ref, x.exp) for x in members
                               if not x.live(now) and x.connection_id not in outcome.gone), now)
    return outcome
