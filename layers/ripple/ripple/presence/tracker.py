"""Presence state kept on member rows; diffs announced to the topic as Phoenix Presence does."""
from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from typing import Any

from ripple.broadcast.relay import relay
from ripple.channels.member import Member
from ripple.gateway import ConnectionsApi
from ripple.protocol.message import Message
from ripple.store import Store


def new_ref() -> str:
    """A unique `phx_ref` for one tracked meta."""
    return base64.urlsafe_b64encode(os.urandom(9)).decode()


def state(members: Iterable[Member], private: bool) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`presence_state`: every key with the metas of every connection tracking under it."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for member in members:
        if member.presence is not None and member.private == private:
            out.setdefault(member.presence_key, {"metas": []})["metas"].append(member.presence)
    return out


def diff(key: str, joins: list[dict], leaves: list[dict]) -> dict[str, dict]:
    """`presence_diff` payload for one key."""
    return {"joins": {key: {"metas": joins}} if joins else {},
            "leaves": {key: {"metas": leaves}} if leaves else {}}


def announce(store: Store, api: ConnectionsApi, topic: str, private: bool, payload: dict) -> None:
    """Send a `presence_diff` to the members of `topic` (its private or its public side);
    members found gone depart in turn."""
    members = [m for m in store.members(topic) if m.private == private]
    outcome = relay(api, members, Message(topic=topic, event="presence_diff", payload=payload))
    for connection_id in outcome.gone:
        depart(store, api, connection_id)


def depart(store: Store, api: ConnectionsApi, connection_id: str) -> None:
    """Forget a connection everywhere and tell each topic it tracked presence on that it left."""
    for member in store.delete_connection(connection_id):
        if member.presence is not None:
            announce(store, api, member.topic, member.private,
                     diff(member.presence_key, [], [member.presence]))


def sweep(store: Store, api: ConnectionsApi) -> int:
    """Depart every presence holder API Gateway no longer knows; returns how many departed.

    API Gateway's `$disconnect` is best effort: this is what bounds how long a vanished client
    stays present (API Gateway's 10-minute idle timeout, plus the sweep interval).
    """
    gone = [cid for cid in store.presence_holders() if not api.alive(cid)]
    for connection_id in gone:
        depart(store, api, connection_id)
    return len(gone)
