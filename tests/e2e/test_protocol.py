"""The wire contract with a raw WebSocket client: auth on connect, replies, errors, bindings."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from ripple.local.stack import DEV_JWT_SECRET
from tests.e2e.test_postgres_changes import SCHEMA
from tests.e2e.wire import Wire, before_marker


@pytest.fixture
def todos(db):
    db.execute(SCHEMA)
    db.execute("create table if not exists public.unpublished (id int primary key)")
    db.execute("""create table if not exists public.tags (id bigint generated always as identity primary key,
                  name text not null)""")
    db.execute("grant select on public.tags, public.unpublished to anon, authenticated")
    db.execute("""do $$ begin
      if not exists (select 1 from pg_publication_tables where tablename = 'tags') then
        alter publication supabase_realtime add table public.tags; end if; end $$""")
    return db


def token(role="anon", exp_in=3600, secret=DEV_JWT_SECRET, **extra):
    claims = {"role": role, "exp": int(time.time()) + exp_in, **extra}
    if role is None:
        del claims["role"]
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize("key", [
    None,
    "not-a-jwt",
    token(exp_in=-10),
    token(secret="another-secret-that-is-also-long-enough-to-sign"),
    token(role=None),
    token(role="postgres"),
    jwt.encode({"role": "anon", "exp": int(time.time()) + 60}, None, algorithm="none"),
    jwt.encode({"role": "anon"}, DEV_JWT_SECRET, algorithm="HS256"),
], ids=["missing", "garbage", "expired", "wrong-key", "no-role", "unknown-role", "alg-none", "no-exp"])
def test_connect_refuses_bad_keys_with_401(stack, key):
    with pytest.raises(InvalidStatus) as refused:
        Wire(stack.ws_url, key)
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
def test_heartbeat_and_errors_keep_the_socket_usable(stack, vsn):
    wire = Wire(stack.ws_url, stack.key("anon"), vsn)
    try:
        ref = wire.send("phoenix", "heartbeat", {})
        assert wire.recv() == {"topic": "phoenix", "event": "phx_reply", "ref": ref,
                               "payload": {"status": "ok", "response": {}},
                               **({"join_ref": None} if vsn == "2.0.0" else {})}
        wire.ws.send("{not json")
        err = wire.recv()
        assert err["event"] == "phx_error" and err["topic"] == "phoenix"
        assert err["payload"]["reason"].startswith("MalformedMessage:")
        ref = wire.send("realtime:x", "no_such_event", {})
        reply = wire.recv()
        assert reply["ref"] == ref
        assert reply["payload"] == {"status": "error",
                                    "response": {"reason": "UnknownEvent: unknown event 'no_such_event'"}}
        ref = wire.send("realtime:x", "phx_join", "not an object")
        assert wire.recv()["payload"]["response"]["reason"].startswith("InvalidJoinPayload:")
        ref = wire.send("phoenix", "heartbeat", {})
        assert wire.recv()["ref"] == ref
    finally:
        wire.close()


@pytest.mark.parametrize("binding,message", [
    ({"event": "*", "schema": "public", "table": "todos", "filter": "priority=eq.high"},
     "Error parsing `filter` params"),
    ({"event": "*", "schema": "public", "table": "todos", "filter": "nope=eq.1"}, "Error parsing `filter` params"),
    ({"event": "*", "schema": "public", "table": "todos", "filter": "priority=gtt.1"}, "Error parsing `filter` params"),
    ({"event": "*", "schema": "public", "table": "unpublished"}, "Unable to subscribe to changes"),
    ({"event": "*", "schema": "public", "table": "no_such_table"}, "Unable to subscribe to changes"),
    ({"event": "TRUNCATE", "schema": "public", "table": "todos"}, "invalid event"),
])
def test_bad_bindings_get_a_system_error_and_no_subscription(stack, todos, binding, message):
    user = str(uuid.uuid4())
    wire = Wire(stack.ws_url, stack.key("anon"))
    control = Wire(stack.ws_url, stack.key("anon"))  # a valid binding that the same insert matches
    try:
        control.join("realtime:good", [{"event": "*", "schema": "public", "table": "todos",
                                        "filter": f"user_id=eq.{user}"}])
        reply, system = wire.join("realtime:bad", [binding])
        assert reply["payload"]["status"] == "ok"
        assert system["event"] == "system" and system["payload"]["status"] == "error"
        assert system["payload"]["extension"] == "postgres_changes"
        assert message in system["payload"]["message"], system
        todos.execute("insert into todos (user_id, title) values (%s, 'x')", (user,))
        assert control.recv()["payload"]["data"]["record"]["user_id"] == user
        assert before_marker(wire, todos) == []
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1.5)
    finally:
        wire.close()
        control.close()


def test_join_echoes_bindings_in_order_and_routes_by_ids(stack, todos):
    me = str(uuid.uuid4())
    bindings = [
        {"event": "INSERT", "schema": "public", "table": "todos", "filter": f"user_id=eq.{me}"},
        {"event": "*", "schema": "public", "table": "tags"},
        {"event": "*", "schema": "public"},
        {"event": "DELETE", "schema": "public", "table": "todos", "filter": "priority=gt.5"},
    ]
    wire = Wire(stack.ws_url, stack.key("anon"), "2.0.0")
    other = Wire(stack.ws_url, stack.key("anon"))
    try:
        reply, system = wire.join("realtime:many", bindings)
        echoed = reply["payload"]["response"]["postgres_changes"]
        assert [{k: v for k, v in e.items() if k != "id"} for e in echoed] == bindings
        ids = [e["id"] for e in echoed]
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 4
        assert system["payload"] == {"channel": "many", "extension": "postgres_changes",
                                     "message": "Subscribed to PostgreSQL", "status": "ok"}
        _, _ = other.join("realtime:tags-only", [{"event": "INSERT", "schema": "public", "table": "tags"}])

        todos.execute("insert into todos (user_id, title, priority) values (%s, 'a', 9)", (me,))
        push = wire.recv()
        assert push["event"] == "postgres_changes" and push["ref"] is None
        assert sorted(push["payload"]["ids"]) == sorted([ids[0], ids[2]])
        todos.execute("delete from todos where user_id = %s", (me,))
        push = wire.recv()
        assert push["payload"]["data"]["type"] == "DELETE"
        assert sorted(push["payload"]["ids"]) == sorted([ids[2], ids[3]])
        todos.execute("insert into tags (name) values ('t1')")
        push = wire.recv()
        assert sorted(push["payload"]["ids"]) == sorted([ids[1], ids[2]])
        assert other.recv()["payload"]["data"]["record"]["name"] == "t1"

        wire.send("realtime:many", "phx_leave", {}, join_ref="jrealtime:many")
        assert wire.recv()["payload"] == {"status": "ok", "response": {}}
        todos.execute("insert into tags (name) values ('t2')")
        assert other.recv()["payload"]["data"]["record"]["name"] == "t2"
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1.0)
    finally:
        wire.close()
        other.close()


def test_several_channels_on_one_connection_each_get_their_push(stack, todos):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:one", [{"event": "INSERT", "schema": "public", "table": "tags"}])
        wire.join("realtime:two", [{"event": "INSERT", "schema": "public", "table": "tags",
                                    "filter": "name=like.special*"}])
        todos.execute("insert into tags (name) values ('special-1')")
        topics = sorted(wire.recv()["topic"] for _ in range(2))
        assert topics == ["realtime:one", "realtime:two"]
        todos.execute("insert into tags (name) values ('plain')")
        assert wire.recv()["topic"] == "realtime:one"
        with pytest.raises(TimeoutError):
            wire.recv(timeout=1.0)
    finally:
        wire.close()


def test_select_limits_the_columns_sent(stack, todos):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.join("realtime:sel", [{"event": "INSERT", "schema": "public", "table": "todos",
                                    "select": ["id", "title"]}])
        todos.execute("insert into todos (user_id, title) values (%s, 'narrow')", (str(uuid.uuid4()),))
        data = wire.recv()["payload"]["data"]
        assert set(data["record"]) == {"id", "title"} and data["record"]["title"] == "narrow"
        assert [c["name"] for c in data["columns"]] == ["id", "title"]
    finally:
        wire.close()
