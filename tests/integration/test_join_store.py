"""Joining on the DynamoDB store (moto's server): a first join of a topic looks nothing up on the
connection index, whose Query grows with the table locally; a rejoin still ends the channel it
replaces, and a leave removes what the join stored."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import boto3
import pytest

from ripple.catalog import TableInfo
from ripple.config import Settings
from ripple.gateway import ConnectionsApi
from ripple.local.stack import BINDINGS_TABLE, CONNECTIONS_TABLE, REGION
from ripple.router.router import Router
from ripple.store import Connection, DynamoDBStore, table_key
from tests.integration.test_lean_batch_get import moto  # noqa: F401  (fixture: moto with the stack's tables)
from tests.unit.conftest import UNIT_SECRET, RecordingClient, StaticCatalog
from tests.unit.router.test_router import TODOS, frame

pytestmark = pytest.mark.timeout(60)


class CountingClient:
    """A boto3 DynamoDB client that counts its requests by operation (and Queries by index)."""

    def __init__(self, client: Any):
        self.client = client
        self.requests: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr) or name.startswith("_") or name in ("exceptions", "meta"):
            return attr

        def counted(**kwargs: Any) -> Any:
            self.requests[name + (f"@{kwargs['IndexName']}" if "IndexName" in kwargs else "")] += 1
            return attr(**kwargs)
        return counted


@pytest.fixture
def ddb(moto: str) -> CountingClient:
    return CountingClient(boto3.client("dynamodb", endpoint_url=moto, region_name=REGION))


@pytest.fixture
def store(ddb: CountingClient) -> DynamoDBStore:
    return DynamoDBStore(ddb, CONNECTIONS_TABLE, BINDINGS_TABLE)


@pytest.fixture
def posted() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def router(store: DynamoDBStore, posted: RecordingClient, monkeypatch) -> Router:
    monkeypatch.setenv("RIPPLE_JWT_SECRET", UNIT_SECRET)
    catalog = StaticCatalog(tables={("public", "todos"): TODOS, ("public", "notes"): TableInfo(
        published=True, readable=True, types={"id": "int8"})})
    return Router(store=store, api=ConnectionsApi(posted, concurrency=2), catalog=catalog,
                  config=Settings(jwt_secret=UNIT_SECRET, max_channels_per_connection=3))


def connect(store: DynamoDBStore) -> str:
    cid = f"c-{uuid.uuid4().hex[:12]}"
    store.put_connection(Connection(connection_id=cid, role="anon", claims=json.dumps({"role": "anon"}),
                                    connected_at=0, expires_at=2**31))
    return cid


def join(router: Router, cid: str, tables: list[str], **config: Any) -> list[dict]:
    changes = [{"event": "*", "schema": "public", "table": t} for t in tables]
    router.handle(cid, frame("realtime:room", "phx_join", {"config": {"postgres_changes": changes, **config}}))
    frames = router.api.client.take(cid)
    assert frames[0]["payload"]["status"] == "ok", frames
    return frames


def subscribed(store: DynamoDBStore, cid: str, table: str) -> list[str]:
    found, _ = store.bindings_under([table_key("public", table)])
    return [b.topic for b in found[table_key("public", table)] if b.connection_id == cid]


def test_enter_channel_says_whether_the_topic_was_counted_before(store: DynamoDBStore) -> None:
    cid = connect(store)
    first = store.enter_channel(cid, "realtime:a", limit=5)
    again = store.enter_channel(cid, "realtime:a", limit=5)
    other = store.enter_channel(cid, "realtime:b", limit=5)
    assert (first.rejoin, again.rejoin, other.rejoin) == (False, True, False)
    assert first.connection.connection_id == cid and first.connection.expires_at == 2**31
    store.leave_channel(cid, "realtime:a")
    assert store.enter_channel(cid, "realtime:a", limit=5).rejoin is False


def test_a_first_join_does_not_query_the_connection_index(router: Router, store: DynamoDBStore,
                                                          ddb: CountingClient) -> None:
    cid = connect(store)
    ddb.requests.clear()
    join(router, cid, ["todos"])
    assert ddb.requests["query@by_connection"] == 0, ddb.requests
    assert ddb.requests["scan"] == 0
    assert subscribed(store, cid, "todos") == ["realtime:room"]


def test_a_rejoin_replaces_the_old_channels_rows(router: Router, store: DynamoDBStore,
                                                 ddb: CountingClient) -> None:
    cid = connect(store)
    join(router, cid, ["todos"])
    ddb.requests.clear()
    join(router, cid, ["notes"])
    # One lookup of the channel being replaced, and its binding is gone.
    assert ddb.requests["query@by_connection"] == 1, ddb.requests
    assert subscribed(store, cid, "todos") == []
    assert subscribed(store, cid, "notes") == ["realtime:room"]
    member, bindings = store.channel(cid, "realtime:room")
    assert member is not None and [b.table for b in bindings] == ["notes"]


def test_a_leave_then_a_join_starts_afresh(router: Router, store: DynamoDBStore, ddb: CountingClient) -> None:
    cid = connect(store)
    join(router, cid, ["todos"])
    router.handle(cid, frame("realtime:room", "phx_leave", ref="2"))
    assert store.channel(cid, "realtime:room") == (None, [])
    ddb.requests.clear()
    join(router, cid, ["notes"])
    assert ddb.requests["query@by_connection"] == 0, ddb.requests
    assert subscribed(store, cid, "todos") == [] and subscribed(store, cid, "notes") == ["realtime:room"]


def test_a_join_whose_writes_fail_leaves_no_rows_and_no_count(router: Router, store: DynamoDBStore,
                                                              monkeypatch) -> None:
    cid = connect(store)

    def refuse(member: Any, expires_at: int) -> None:
        raise RuntimeError("DynamoDB is unavailable")
    monkeypatch.setattr(store, "put_member", refuse)
    router.handle(cid, frame("realtime:room", "phx_join", {"config": {"postgres_changes": [
        {"event": "*", "schema": "public", "table": "todos"}]}}))
    (reply,) = router.api.client.take(cid)
    assert reply["payload"]["status"] == "error"
    # The binding written before the failure is gone, and the topic is not counted: the next
    # join is a first join again.
    assert subscribed(store, cid, "todos") == []
    assert store.enter_channel(cid, "realtime:room", limit=5).rejoin is False
