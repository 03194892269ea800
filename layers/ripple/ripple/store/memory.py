"""The store in memory: the same rows and rules as DynamoDB's, for unit tests of the core.

    store = MemoryStore()
    store.put_connection(Connection("c1", "anon", "{}", connected_at=0, expires_at=10**10))
    store.enter_channel("c1", "realtime:room", limit=100)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ripple.store.base import Store
from ripple.store.bindings import Binding
from ripple.store.connections import Connection, Entered
from ripple.store.exceptions import NoConnection, TooManyChannels
from ripple.store.members import Member


@dataclass
class _ConnectionRow:
    connection: Connection
    channels: set[str] = field(default_factory=set)
    # counter -> (one-second window, events counted in it)
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class MemoryStore(Store):
    """Every row in dicts; `calls` counts one per operation."""

    calls: int = 0
    _connections: dict[str, _ConnectionRow] = field(default_factory=dict)
    # bucket -> sort key -> binding; table bucket -> eq-indexed columns.
    _buckets: dict[str, dict[str, Binding]] = field(default_factory=dict)
    _registry: dict[str, set[str]] = field(default_factory=dict)
    # topic -> connection -> member; (connection, topic) of presence holders.
    _members: dict[str, dict[str, Member]] = field(default_factory=dict)
    _holders: set[tuple[str, str]] = field(default_factory=set)

    # -- connections ----------------------------------------------------------------------------
    def put_connection(self, connection: Connection) -> None:
        self.calls += 1
        self._connections[connection.connection_id] = _ConnectionRow(connection)

    def get_connection(self, connection_id: str) -> Connection | None:
        self.calls += 1
        row = self._connections.get(connection_id)
        return row.connection if row else None

    def touch(self, connection_id: str, now: float) -> None:
        self.calls += 1
        row = self._connections.get(connection_id)
        if row is not None:
            row.connection = replace(row.connection, last_seen=int(now))

    def last_heard(self, connection_ids: Iterable[str]) -> dict[str, float]:
        self.calls += 1
        heard = {}
        for cid in set(connection_ids):
            row = self._connections.get(cid)
            if row is not None:
                seen = row.connection.last_seen
                heard[cid] = float(seen) if seen is not None else row.connection.connected_at / 1000
        return heard

    def enter_channel(self, connection_id: str, topic: str, limit: int) -> Entered:
        self.calls += 1
        row = self._connections.get(connection_id)
        if row is None:
            raise NoConnection(connection_id)
        held = topic in row.channels
        if not held and len(row.channels) >= limit:
            raise TooManyChannels(limit)
        row.channels.add(topic)
        return Entered(row.connection, held)

    def leave_channel(self, connection_id: str, topic: str) -> None:
        self.calls += 1
        row = self._connections.get(connection_id)
        if row is not None:
            row.channels.discard(topic)

    def spend(self, connection_id: str, limit: int, now: float, counter: str = "rate") -> bool:
        self.calls += 1
        row = self._connections.get(connection_id)
        if row is None:
            return False
        window, count = row.windows.get(counter, (None, 0))
        if window != int(now):
            row.windows[counter] = (int(now), 1)
            return True
        if count >= limit:
            return False
        row.windows[counter] = (int(now), count + 1)
        return True

    def delete_connection(self, connection_id: str) -> list[Member]:
        self.calls += 1
        self._connections.pop(connection_id, None)
        topics = {b.topic for rows in self._buckets.values() for b in rows.values()
                  if b.connection_id == connection_id}
        topics |= {topic for topic, members in self._members.items() if connection_id in members}
        return [member for topic in sorted(topics)
                if (member := self._remove(connection_id, topic)) is not None]

    # -- bindings -------------------------------------------------------------------------------
    def add_bindings(self, bindings: list[Binding], indexed: dict[str, set[str]], expires_at: int) -> None:
        self.calls += 1
        for bucket, columns in indexed.items():
            self._registry.setdefault(bucket, set()).update(columns)
        self.put_bindings(bindings, expires_at)

    def put_bindings(self, bindings: list[Binding], expires_at: int) -> None:
        self.calls += 1
        for b in bindings:
            self._buckets.setdefault(b.bucket, {})[b.sort_key] = b

    def bindings_under(self, buckets: Iterable[str]) -> tuple[dict[str, list[Binding]], dict[str, set[str]]]:
        wanted = sorted(set(buckets))
        self.calls += len(wanted)
        found = {bucket: list(self._buckets.get(bucket, {}).values()) for bucket in wanted}
        registry = {bucket: set(self._registry[bucket]) for bucket in wanted if bucket in self._registry}
        return found, registry

    def channel(self, connection_id: str, topic: str) -> tuple[Member | None, list[Binding]]:
        self.calls += 1
        return self._members.get(topic, {}).get(connection_id), self._bindings_of(connection_id, topic)

    def remove_channel(self, connection_id: str, topic: str) -> Member | None:
        self.calls += 1
        return self._remove(connection_id, topic)

    # -- members --------------------------------------------------------------------------------
    def put_member(self, member: Member, expires_at: int) -> None:
        self.calls += 1
        self._members.setdefault(member.topic, {})[member.connection_id] = member

    def member(self, connection_id: str, topic: str) -> Member | None:
        self.calls += 1
        return self._members.get(topic, {}).get(connection_id)

    def members(self, topic: str) -> list[Member]:
        self.calls += 1
        return list(self._members.get(topic, {}).values())

    def set_presence(self, connection_id: str, topic: str, meta: dict[str, Any] | None) -> None:
        self.calls += 2
        member = self._members.get(topic, {}).get(connection_id)
        if member is None:
            return
        self._members[topic][connection_id] = replace(member, presence=meta)
        if meta is None:
            self._holders.discard((connection_id, topic))
        else:
            self._holders.add((connection_id, topic))

    def set_write_access(self, connection_id: str, topic: str, broadcast: bool, presence: bool) -> None:
        self.calls += 1
        member = self._members.get(topic, {}).get(connection_id)
        if member is not None:
            self._members[topic][connection_id] = replace(member, can_broadcast=broadcast, can_track=presence)

    def presence_holders(self) -> set[str]:
        self.calls += 1
        return {cid for cid, _ in self._holders}

    # -- internals ------------------------------------------------------------------------------
    def _bindings_of(self, connection_id: str, topic: str) -> list[Binding]:
        return [b for rows in self._buckets.values() for b in rows.values()
                if b.connection_id == connection_id and b.topic == topic]

    def _remove(self, connection_id: str, topic: str) -> Member | None:
        for b in self._bindings_of(connection_id, topic):
            del self._buckets[b.bucket][b.sort_key]
        self._holders.discard((connection_id, topic))
        return self._members.get(topic, {}).pop(connection_id, None)
