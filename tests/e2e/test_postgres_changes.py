"""A row written in Postgres reaches the unmodified clients, filtered and shaped as Supabase sends it."""
from __future__ import annotations

import uuid

import pytest

from tests.e2e.clients import JsListener, PyListener
from tests.e2e.wire import Wire

SCHEMA = """
create table if not exists public.todos (
  id bigint generated always as identity primary key,
  user_id uuid not null,
  title text not null,
  priority int not null default 0,
  done boolean not null default false,
  created_at timestamptz not null default now()
);
alter table public.todos replica identity default;
grant select on public.todos to anon, authenticated;
do $$ begin
  if not exists (select 1 from pg_publication_tables where pubname = 'supabase_realtime'
                 and schemaname = 'public' and tablename = 'todos') then
    alter publication supabase_realtime add table public.todos;
  end if;
end $$;
"""


@pytest.fixture
def todos(db):
    db.execute(SCHEMA)
    return db


def write_lifecycle(db, me: str, other: str) -> int:
    """INSERT, UPDATE, DELETE of my row, interleaved with writes to someone else's."""
    db.execute("insert into todos (user_id, title) values (%s, 'not mine')", (other,))
    row_id = db.execute("insert into todos (user_id, title, priority) values (%s, 'mine', 3) returning id",
                        (me,)).fetchone()[0]
    db.execute("update todos set done = true where user_id = %s", (other,))
    db.execute("update todos set done = true, title = 'mine, done' where id = %s", (row_id,))
    db.execute("delete from todos where user_id = %s", (other,))
    db.execute("delete from todos where id = %s", (row_id,))
    return row_id


def watching(stack, condition: str, topic: str = "realtime:todos-control") -> Wire:
    """A control: a raw socket subscribed to every change of `todos` matching `condition`."""
    wire = Wire(stack.ws_url, stack.key("anon"))
    wire.join(topic, [{"event": "*", "schema": "public", "table": "todos", "filter": condition}])
    return wire


def kinds(wire: Wire, count: int) -> list[tuple[str, str]]:
    """(type, title) of the next `count` changes `wire` receives."""
    data = [wire.recv()["payload"]["data"] for _ in range(count)]
    return [(d["type"], (d.get("record") or d["old_record"])["title"]) for d in data]


@pytest.mark.parametrize("vsn", ["1.0.0", "default"])
def test_supabase_js_sees_exactly_its_rows_in_order(stack, todos, vsn, supabase_js):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    js = JsListener(stack.api_url, stack.key("anon"),
                    [{"event": "*", "schema": "public", "table": "todos", "filter": f"user_id=eq.{me}"}],
                    vsn=vsn, client=supabase_js)
    control = watching(stack, f"user_id=eq.{other}")  # the rows js must not see
    try:
        js.wait_for("status", status="SUBSCRIBED")
        row_id = write_lifecycle(todos, me, other)
        got = [line["payload"] for line in js.changes(3)]
        assert [p["eventType"] for p in got] == ["INSERT", "UPDATE", "DELETE"]
        insert, update, delete = got
        assert insert["new"]["id"] == row_id and insert["new"]["title"] == "mine"
        assert insert["old"] == {}
        assert insert["schema"] == "public" and insert["table"] == "todos"
        assert insert["commit_timestamp"].endswith("Z")
        assert update["new"]["title"] == "mine, done" and update["old"]["title"] == "mine"
        assert delete["old"]["id"] == row_id and delete["old"]["user_id"] == me
        assert delete["new"] == {}
        assert kinds(control, 3) == [("INSERT", "not mine"), ("UPDATE", "not mine"), ("DELETE", "not mine")]
        assert not [line for line in js.quiet(1.0) if line["kind"] == "change"]
    finally:
        js.close()
        control.close()


def test_realtime_py_sees_exactly_its_rows_in_order(stack, todos):
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    py = PyListener(stack.api_url, stack.key("anon"), [
        {"event": "INSERT", "schema": "public", "table": "todos", "filter": f"user_id=eq.{me}"},
        {"event": "DELETE", "schema": "public", "table": "todos", "filter": f"user_id=eq.{me}"},
    ])
    control = watching(stack, f"user_id=in.({me},{other})")  # every event, both users
    try:
        row_id = write_lifecycle(todos, me, other)
        (i1, insert), (i2, delete) = py.changes(2)
        assert (i1, i2) == (0, 1)
        data = insert["data"]
        assert data["type"] == "INSERT" and data["record"]["id"] == row_id
        assert "old_record" not in data and data["errors"] is None
        assert {"name": "user_id", "type": "uuid"} in data["columns"]
        assert delete["data"]["type"] == "DELETE" and "record" not in delete["data"]
        assert delete["data"]["old_record"]["title"] == "mine, done"
        assert kinds(control, 6) == [("INSERT", "not mine"), ("INSERT", "mine"), ("UPDATE", "not mine"),
                                     ("UPDATE", "mine, done"), ("DELETE", "not mine"), ("DELETE", "mine, done")]
        assert py.quiet(1.0) == []
    finally:
        py.close()
        control.close()


def test_typed_and_combined_filters_with_both_clients(stack, todos, supabase_js):
    me = str(uuid.uuid4())
    flt = f"user_id=eq.{me},priority=gte.2,title=not.in.(skip,\"a,b\")"
    binding = {"event": "*", "schema": "public", "table": "todos", "filter": flt}
    js = JsListener(stack.api_url, stack.key("anon"), [binding], vsn="1.0.0", channel="combined-js", client=supabase_js)
    py = PyListener(stack.api_url, stack.key("anon"), [binding], channel="combined-py")
    control = watching(stack, f"user_id=eq.{me}")  # the same rows without the typed conditions
    try:
        js.wait_for("status", status="SUBSCRIBED")
        rows = [("low", 1), ("skip", 5), ("a,b", 5), ("ten", 10), ("two", 2)]
        for title, priority in rows:
            todos.execute("insert into todos (user_id, title, priority) values (%s, %s, %s)", (me, title, priority))
        # priority is an int column: 10 >= 2 numerically even though "10" < "2" as text
        assert [line["payload"]["new"]["title"] for line in js.changes(2)] == ["ten", "two"]
        assert [p["data"]["record"]["title"] for _, p in py.changes(2)] == ["ten", "two"]
        assert [title for _, title in kinds(control, 5)] == [title for title, _ in rows]
        assert not [line for line in js.quiet(0.5) if line["kind"] == "change"] and py.quiet(0.1) == []
    finally:
        js.close()
        py.close()
        control.close()
