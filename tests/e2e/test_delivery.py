"""Delivery guarantees and cost shape of the capture → outbox → fanout path."""
from __future__ import annotations

import threading
import time
import uuid

import boto3
import psycopg
import pytest

from ripple.local.stack import BINDINGS_TABLE
from ripple.store import Binding, store, table_key
from tests.e2e.test_protocol import todos  # noqa: F401  (fixture)
from tests.e2e.wire import Wire, before_marker


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_change_committed_after_a_later_one_is_not_skipped(stack, todos):
    me = str(uuid.uuid4())
    wire = Wire(stack.ws_url, stack.key("anon"))
    slow = psycopg.connect(stack.db_url)
    try:
        wire.join("realtime:late", [{"event": "INSERT", "schema": "public", "table": "todos",
                                     "filter": f"user_id=eq.{me}"}])
        slow.execute("insert into todos (user_id, title) values (%s, 'written first')", (me,))
        todos.execute("insert into todos (user_id, title) values (%s, 'written second')", (me,))
        assert wire.recv()["payload"]["data"]["record"]["title"] == "written second"
        slow.commit()
        assert wire.recv()["payload"]["data"]["record"]["title"] == "written first"
    finally:
        slow.close()
        wire.close()


def test_writes_to_one_row_arrive_in_commit_order(stack, todos):
    row = todos.execute("insert into todos (user_id, title) values (%s, 'v0') returning id",
                        (str(uuid.uuid4()),)).fetchone()[0]
    wire = Wire(stack.ws_url, stack.key("anon"))
    first = psycopg.connect(stack.db_url)
    try:
        wire.join("realtime:row", [{"event": "UPDATE", "schema": "public", "table": "todos",
                                    "filter": f"id=eq.{row}"}])
        first.execute("update todos set title = 'v1' where id = %s", (row,))
        blocked = threading.Thread(target=lambda: todos.execute(
            "update todos set title = title || '+v2' where id = %s", (row,)))
        blocked.start()
        time.sleep(0.3)
        first.commit()
        blocked.join(timeout=10)
        titles = [wire.recv()["payload"]["data"]["record"]["title"] for _ in range(2)]
        assert titles == ["v1", "v1+v2"]
    finally:
        first.close()
        wire.close()


def test_rolled_back_writes_send_nothing(stack, todos):
    me, twin = str(uuid.uuid4()), str(uuid.uuid4())
    wire = Wire(stack.ws_url, stack.key("anon"))
    control = Wire(stack.ws_url, stack.key("anon"))  # the same binding for a write that commits
    try:
        wire.join("realtime:rb", [{"event": "*", "schema": "public", "table": "todos",
                                   "filter": f"user_id=eq.{me}"}])
        control.join("realtime:rb", [{"event": "*", "schema": "public", "table": "todos",
                                      "filter": f"user_id=eq.{twin}"}])
        with psycopg.connect(stack.db_url) as conn:
            conn.execute("insert into todos (user_id, title) values (%s, 'never')", (me,))
            conn.rollback()
        todos.execute("insert into todos (user_id, title) values (%s, 'committed')", (twin,))
        assert control.recv()["payload"]["data"]["record"]["title"] == "committed"
        assert before_marker(wire, todos) == []
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1.5)
        assert todos.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0
    finally:
        wire.close()
        control.close()


def test_capture_follows_the_publication(db):
    db.execute("create table if not exists public.pub_probe (id int primary key)")
    has_trigger = "select count(*) from pg_trigger where tgrelid = 'public.pub_probe'::regclass " \
                  "and tgname = 'realtime_capture'"
    db.execute("alter publication supabase_realtime add table public.pub_probe")
    assert db.execute(has_trigger).fetchone()[0] == 1
    db.execute("alter publication supabase_realtime drop table public.pub_probe")
    assert db.execute(has_trigger).fetchone()[0] == 0
    db.execute("insert into pub_probe values (1)")
    assert db.execute("select count(*) from realtime.outbox where table_name = 'pub_probe'").fetchone()[0] == 0


def _rows_for(topic: str) -> list[dict]:
    ddb = boto3.client("dynamodb")
    items = ddb.scan(TableName=BINDINGS_TABLE)["Items"]  # test inspection only; the product never scans
    return [i for i in items if i.get("topic", {}).get("S") == topic]


def test_disconnect_removes_every_binding(stack, todos):
    wire = Wire(stack.ws_url, stack.key("anon"))
    wire.join("realtime:bye", [{"event": "*", "schema": "public", "table": "todos"},
                               {"event": "*", "schema": "public", "table": "tags", "filter": "name=eq.x"}])
    assert len(_rows_for("realtime:bye")) == 3  # two bindings and the channel membership
    wire.close()
    assert wait_until(lambda: not _rows_for("realtime:bye"))


def test_a_gone_connection_is_removed_on_its_first_410(stack, todos):
    ghost = "R2hvc3Rfb25seQ="  # a connection whose $disconnect never ran
    store().add_bindings([Binding(
        connection_id=ghost, topic="realtime:ghost", id=1, event="*", schema="public", table="tags",
        bucket=table_key("public", "tags"), vsn="1.0.0")], {}, int(time.time()) + 600)
    assert len(_rows_for("realtime:ghost")) == 1
    todos.execute("insert into tags (name) values ('haunt')")
    assert wait_until(lambda: not _rows_for("realtime:ghost"))


def test_cost_per_batch_is_queries_on_derived_keys_and_constant_round_trips(stack, db):
    # A table of its own: the eq-column registry of `todos` also lists columns other tests filter on.
    db.execute("create table if not exists public.inbox (id bigint generated always as identity "
               "primary key, user_id uuid not null, title text)")
    db.execute("grant select on public.inbox to anon")
    db.execute("""do $$ begin if not exists (select 1 from pg_publication_tables where tablename = 'inbox')
                  then alter publication supabase_realtime add table public.inbox; end if; end $$""")
    scans, queried = [], []
    store().client.meta.events.register("before-call.dynamodb.Scan", lambda **kw: scans.append(kw))

    def bucket_query(params, **_):
        if params.get("KeyConditionExpression") == "pk = :pk":
            queried.append(params["ExpressionAttributeValues"][":pk"]["S"])

    store().client.meta.events.register("before-parameter-build.dynamodb.Query", bucket_query)
    users = [str(uuid.uuid4()) for _ in range(20)]
    wires = [Wire(stack.ws_url, stack.key("anon")) for _ in users]
    try:
        for wire, user in zip(wires, users):
            wire.join("realtime:mine", [{"event": "INSERT", "schema": "public", "table": "inbox",
                                         "filter": f"user_id=eq.{user}"}])
        stack.bridge.results.clear()
        queried.clear()
        db.execute("insert into inbox (user_id, title) values (%s, 'one')", (users[0],))
        assert wires[0].recv()["payload"]["data"]["record"]["title"] == "one"
        assert wait_until(lambda: len(stack.bridge.results) >= 1)
        first_queries = list(queried)
        db.execute("insert into inbox (user_id, title) values (%s, 'again')", (users[0],))
        assert wires[0].recv()["payload"]["data"]["record"]["title"] == "again"
        assert wait_until(lambda: len(stack.bridge.results) >= 2)
        again_queries = queried[len(first_queries):]
        with db.transaction():
            for user in users:
                db.execute("insert into inbox (user_id, title) values (%s, 'batch')", (user,))
        for wire in wires:
            assert wire.recv()["payload"]["data"]["record"]["title"] == "batch"
        assert wait_until(lambda: len(stack.bridge.results) >= 3)
        batch_queries = queried[len(first_queries) + len(again_queries):]
        single, again, batch = list(stack.bridge.results)
        inbox, eq0 = "public.inbox", f"public.inbox|user_id={users[0]}"
        # one change: a version read of the three table buckets (inbox, public.*, *.*), one of the
        # user_id bucket, and a Query of each bucket whose bindings changed since it was last read
        # (here the inbox bucket, whose registry gained user_id, and the user's bucket, at least)
        assert {inbox, eq0} <= set(first_queries) <= {inbox, eq0, "public.*", "*.*"}
        assert single["changes"] == 1 and single["dynamodb_calls"] == 2 + len(first_queries)
        # pending rows under the drain lock, one batched authorization, ack
        assert single["pg_round_trips"] == 3 and single["posts"] == 1
        # the same audience again: the two version reads and no Query
        assert again_queries == [] and again["dynamodb_calls"] == 2 and again["posts"] == 1
        # twenty changes in one batch: the version reads, and a Query per user bucket not yet read
        assert sorted(batch_queries) == sorted(f"public.inbox|user_id={u}" for u in users[1:])
        assert batch["changes"] == 20 and batch["dynamodb_calls"] == 2 + 19
        assert batch["pg_round_trips"] == 3 and batch["posts"] == 20
        assert scans == []
    finally:
        store().client.meta.events.unregister("before-parameter-build.dynamodb.Query", bucket_query)
        for wire in wires:
            wire.close()


def test_a_wide_batch_commits_in_slices_bounded_by_posts(stack, db, todos):
    from ripple.outbox.drain import fanout

    wires = [Wire(stack.ws_url, stack.key("anon")) for _ in range(3)]
    drainer = fanout()
    budget = drainer.max_posts_per_batch
    try:
        db.execute("grant select on public.tags to anon")
        for wire in wires:
            wire.join("realtime:slices", [{"event": "INSERT", "schema": "public", "table": "tags"}])
        drainer.max_posts_per_batch = 5
        stack.bridge.results.clear()
        with db.transaction():
            for n in range(4):
                db.execute("insert into tags (name) values (%s)", (f"slice-{n}",))
        for wire in wires:
            assert [wire.recv()["payload"]["data"]["record"]["name"] for _ in range(4)] == \
                [f"slice-{n}" for n in range(4)]
        assert wait_until(lambda: sum(r["changes"] for r in stack.bridge.results) == 4)
        # 3 posts per change and at most 5 per transaction: one change per batch
        assert sum(r["batches"] for r in stack.bridge.results) == 4
    finally:
        drainer.max_posts_per_batch = budget
        for wire in wires:
            wire.close()
