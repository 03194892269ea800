"""Posting a batch's postgres_changes frames: each connection's frames in change order, the
connections concurrently; connections found gone depart."""
from __future__ import annotations

from collections import defaultdict

from ripple.channels.lifecycle import depart, depart_gone
from ripple.gateway import ConnectionsApi, Delivery, Gone, Outcome
from ripple.store import Store


def post(store: Store, api: ConnectionsApi, frames: list[tuple[str, str]]) -> Outcome:
    """Deliver (connection, frame) pairs, kept in order per connection."""
    by_connection: dict[str, list[str]] = defaultdict(list)
    for connection_id, frame in frames:
        by_connection[connection_id].append(frame)
    outcome = api.deliver([Delivery(cid, f) for cid, f in by_connection.items()])
    depart_gone(store, api, outcome)
    return outcome


def tell(store: Store, api: ConnectionsApi, notices: list[tuple[str, str]]) -> None:
    """Send (connection, frame) notices best effort (nothing keeps one that cannot get through);
    a connection found gone departs."""
    for connection_id, frame in notices:
        try:
            api.send(connection_id, frame)
        except Gone:
            depart(store, api, connection_id)
