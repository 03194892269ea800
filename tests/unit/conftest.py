"""Doubles for unit tests of the realtime core: the in-memory store is the store's own second
implementation; the gateway records frames instead of reaching API Gateway; the catalog answers
what Postgres would say about tables and channel policies."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from ripple.catalog import Catalog, ChannelAccess, TableInfo
from ripple.gateway import ConnectionsApi
from ripple.store import Connection, MemoryStore

UNIT_SECRET = "unit-test-secret-with-at-least-32-characters"


class _Gone(Exception):
    pass


@dataclass
class RecordingClient:
    """`apigatewaymanagementapi` as far as ConnectionsApi uses it; `gone` connections answer 410."""

    frames: dict[str, list[dict]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    closed: list[str] = field(default_factory=list)

    class exceptions:  # noqa: N801 - boto3's shape
        GoneException = _Gone

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803
        if ConnectionId in self.gone:
            raise _Gone(ConnectionId)
        frame = json.loads(Data)
        if isinstance(frame, list):  # V2: [join_ref, ref, topic, event, payload]
            frame = dict(zip(("join_ref", "ref", "topic", "event", "payload"), frame))
        self.frames.setdefault(ConnectionId, []).append(frame)

    def delete_connection(self, ConnectionId: str) -> None:  # noqa: N803
        self.closed.append(ConnectionId)

    def take(self, connection_id: str) -> list[dict]:
        """The frames posted to a connection since the last take."""
        return self.frames.pop(connection_id, [])


@dataclass
class StaticCatalog(Catalog):
    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)
    access: dict[tuple[str, str], ChannelAccess] = field(default_factory=dict)

    def describe(self, tables, role):
        return {t: self.tables[t] for t in tables if t in self.tables}

    def channel_access(self, role, claims, channel):
        return self.access.get((role, channel), ChannelAccess(False, False, False, False))


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def api(client) -> ConnectionsApi:
    return ConnectionsApi(client, concurrency=2)


def connect(store: MemoryStore, connection_id: str, role: str = "anon", exp: int = 0,
            **claims) -> Connection:
    connection = Connection(connection_id=connection_id, role=role,
                            claims=json.dumps({"role": role, "exp": exp, **claims}),
                            connected_at=0, expires_at=2**31)
    store.put_connection(connection)
    return connection
