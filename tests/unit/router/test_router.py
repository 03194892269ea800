"""The router on the in-memory store: join, leave, access_token, broadcast, presence and limits,
frame in, frames out, without a database or moto."""
from __future__ import annotations

import json
import time

import jwt
import pytest

from ripple.auth import jwt as ripple_jwt
from ripple.catalog import ChannelAccess, TableInfo
from ripple.config import Settings, settings
from ripple.router.router import Router
from ripple.store import eq_key, table_key
from tests.unit.conftest import UNIT_SECRET, StaticCatalog, connect

TODOS = TableInfo(published=True, readable=True, types={"id": "int8", "user_id": "uuid", "title": "text"})
USER = "7d3e0a8c-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("RIPPLE_JWT_SECRET", UNIT_SECRET)
    settings.cache_clear()
    getattr(ripple_jwt._secret, "cache_clear", lambda: None)()
    yield
    monkeypatch.undo()
    settings.cache_clear()
    getattr(ripple_jwt._secret, "cache_clear", lambda: None)()


@pytest.fixture
def catalog() -> StaticCatalog:
    return StaticCatalog(tables={("public", "todos"): TODOS})


@pytest.fixture
def router(memory_store, api, catalog) -> Router:
    for cid in ("a", "b", "c"):
        connect(memory_store, cid)
    return Router(store=memory_store, api=api, catalog=catalog,
                  config=Settings(jwt_secret=UNIT_SECRET, max_channels_per_connection=2,
                                  max_events_per_second=3))


def token(role: str = "authenticated", **over) -> str:
    return jwt.encode({"role": role, "sub": USER, "exp": int(time.time()) + 600, **over}, UNIT_SECRET,
                      algorithm="HS256")


def frame(topic: str, event: str, payload: dict | None = None, ref: str = "1") -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload or {}, "ref": ref,
                       "join_ref": "j1"})


def join(router: Router, cid: str, topic: str, config: dict | None = None, **payload) -> None:
    router.handle(cid, frame(topic, "phx_join", {"config": config or {}, **payload}))


def reasons(frames: list[dict]) -> list[str]:
    return [f["payload"]["response"]["reason"] for f in frames if f["event"] == "phx_reply"
            and f["payload"]["status"] == "error"]


def test_a_join_with_bindings_replies_with_their_ids_and_stores_them_by_bucket(router, client, memory_store):
    changes = [{"event": "INSERT", "schema": "public", "table": "todos", "filter": f"user_id=eq.{USER}"},
               {"event": "*", "schema": "public", "table": "todos"}]
    join(router, "a", "realtime:room", {"postgres_changes": changes})
    reply, system = client.take("a")
    assert reply["payload"]["status"] == "ok"
    echoed = reply["payload"]["response"]["postgres_changes"]
    assert [{k: v for k, v in e.items() if k != "id"} for e in echoed] == changes
    assert all(isinstance(e["id"], int) for e in echoed)
    assert system["event"] == "system" and system["payload"]["message"] == "Subscribed to PostgreSQL"
    found, registry = memory_store.bindings_under([eq_key("public", "todos", "user_id", USER),
                                                   table_key("public", "todos")])
    assert [b.event for b in found[eq_key("public", "todos", "user_id", USER)]] == ["INSERT"]
    assert [b.event for b in found[table_key("public", "todos")]] == ["*"]
    assert registry == {table_key("public", "todos"): {"user_id"}}


def test_a_binding_the_catalog_refuses_joins_the_channel_and_says_why(router, client, memory_store, catalog):
    catalog.tables[("public", "secrets")] = TableInfo(published=True, readable=False)
    join(router, "a", "realtime:room", {"postgres_changes": [{"event": "*", "schema": "public",
                                                              "table": "secrets"}]})
    reply, system = client.take("a")
    assert reply["payload"]["status"] == "ok"
    assert system["payload"]["status"] == "error"
    assert system["payload"]["message"] == "Error 401: Unauthorized: role 'anon' cannot read public.secrets"
    assert memory_store.member("a", "realtime:room") is not None


@pytest.mark.parametrize("topic,payload,reason", [
    ("phoenix", {"config": {}}, "InvalidTopic: cannot join the phoenix topic"),
    ("realtime:x", "not an object", 'InvalidJoinPayload: expected {"config": {...}}'),
    ("realtime:x", {"config": {"presence": {"key": 5}}}, "InvalidJoinPayload: config.presence.key:"),
    ("realtime:x", {"config": {}, "access_token": "nope"}, "InvalidJWTToken: malformed JWT"),
])
def test_refused_joins_get_one_error_reply_and_hold_nothing(router, client, memory_store, topic, payload, reason):
    router.handle("a", json.dumps({"topic": topic, "event": "phx_join", "payload": payload, "ref": "1"}))
    (got,) = reasons(client.take("a"))
    assert got.startswith(reason)
    assert memory_store.member("a", topic) is None
    # The channel count was given back: two more joins fit under the limit of two.
    join(router, "a", "realtime:one")
    join(router, "a", "realtime:two")
    assert reasons(client.take("a")) == []


def test_the_channel_limit_answers_with_supabases_code(router, client):
    for n in range(3):
        join(router, "a", f"realtime:{n}")
    assert reasons(client.take("a")) == ["ChannelRateLimitReached: Too many channels"]


def test_an_unknown_connection_cannot_join(router, client):
    join(router, "ghost", "realtime:x")
    assert reasons(client.take("ghost")) == ["UnknownConnection: this connection is not registered"]


def test_unknown_events_and_malformed_frames_get_protocol_errors(router, client):
    router.handle("a", frame("realtime:x", "shout"))
    router.handle("a", "{not json")
    unknown, malformed = client.take("a")
    assert unknown["payload"]["response"]["reason"] == "UnknownEvent: unknown event 'shout'"
    assert malformed["event"] == "phx_error" and malformed["payload"]["reason"].startswith("MalformedMessage:")


def test_leave_removes_the_channel_before_replying(router, client, memory_store):
    join(router, "a", "realtime:room", {"postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]})
    client.take("a")
    router.handle("a", frame("realtime:room", "phx_leave", ref="2"))
    (reply,) = client.take("a")
    assert reply["payload"]["status"] == "ok" and reply["ref"] == "2"
    assert memory_store.channel("a", "realtime:room") == (None, [])


def test_broadcast_reaches_the_other_members_and_the_sender_only_with_self(router, client):
    join(router, "a", "realtime:room", {"broadcast": {"self": True}})
    join(router, "b", "realtime:room")
    join(router, "c", "realtime:elsewhere")
    client.frames.clear()
    router.handle("a", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "hi", "payload": {"n": 1}}))
    router.handle("b", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "yo", "payload": {}}))
    assert [f["payload"]["event"] for f in client.take("a")] == ["hi", "yo"]
    assert [f["payload"]["event"] for f in client.take("b")] == ["hi"]
    assert client.take("c") == []


def test_the_message_rate_is_limited_per_connection(router, client, monkeypatch):
    join(router, "a", "realtime:room", {"broadcast": {"ack": True}})
    client.take("a")
    now = [1_000_000.5]
    monkeypatch.setattr(time, "time", lambda: now[0])
    for n in range(5):
        router.handle("a", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "e"}, str(n)))
    assert reasons(client.take("a")) == ["MessagePerSecondRateLimitReached: Too many messages per second"] * 2
    now[0] += 1  # the next one-second window
    router.handle("a", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "e"}, "6"))
    assert reasons(client.take("a")) == []


def test_presence_track_is_announced_and_a_leave_announces_the_departure(router, client):
    join(router, "a", "realtime:room", {"presence": {"enabled": True, "key": "ann"}})
    join(router, "b", "realtime:room", {"presence": {"enabled": True, "key": "bob"}})
    client.frames.clear()
    router.handle("a", frame("realtime:room", "presence", {"type": "presence", "event": "track",
                                                           "payload": {"status": "here"}}))
    diff = [f for f in client.take("b") if f["event"] == "presence_diff"]
    assert [list(d["payload"]["joins"]) for d in diff] == [["ann"]]
    router.handle("a", frame("realtime:room", "phx_leave", ref="2"))
    (leave,) = [f for f in client.take("b") if f["event"] == "presence_diff"]
    assert list(leave["payload"]["leaves"]) == ["ann"]


def test_a_private_channel_needs_the_policies_read(router, client, catalog):
    join(router, "a", "realtime:vault", {"private": True}, access_token=token())
    assert reasons(client.take("a")) == [
        "Unauthorized: You do not have permissions to read from this Channel topic: vault"]
    catalog.access[("authenticated", "vault")] = ChannelAccess(True, True, False, False)
    join(router, "a", "realtime:vault", {"private": True}, access_token=token())
    assert reasons(client.take("a")) == []


def test_access_token_renews_the_bindings_and_a_bad_one_closes_the_channel(router, client, memory_store):
    changes = [{"event": "*", "schema": "public", "table": "todos"}]
    join(router, "a", "realtime:room", {"postgres_changes": changes}, access_token=token())
    client.take("a")
    fresh = token(exp=int(time.time()) + 3600)
    router.handle("a", frame("realtime:room", "access_token", {"access_token": fresh}))
    member, bindings = memory_store.channel("a", "realtime:room")
    assert member.exp == bindings[0].exp == jwt.decode(fresh, options={"verify_signature": False})["exp"]
    router.handle("a", frame("realtime:room", "access_token", {"access_token": "garbage"}))
    system, close = client.take("a")
    assert system["payload"]["message"] == "InvalidJWTToken: malformed JWT"
    assert close["event"] == "phx_close"
    assert memory_store.channel("a", "realtime:room") == (None, [])


def test_a_vanished_member_departs_when_a_post_finds_it_gone(router, client, memory_store):
    join(router, "a", "realtime:room")
    join(router, "b", "realtime:room")
    client.gone.add("b")
    router.handle("a", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "e"}))
    assert memory_store.get_connection("b") is None
    assert [m.connection_id for m in memory_store.members("realtime:room")] == ["a"]


def test_bindings_refused_at_join_are_subscribed_when_a_token_that_may_read_arrives(router, client, memory_store,
                                                                                   catalog):
    class RoleCatalog(StaticCatalog):
        def describe(self, tables, role):
            info = TableInfo(published=True, readable=role == "authenticated", types=TODOS.types)
            return {t: info for t in tables}

    router.catalog = RoleCatalog()
    changes = [{"event": "*", "schema": "public", "table": "todos"}]
    join(router, "a", "realtime:inbox", {"postgres_changes": changes})
    reply, refused = client.take("a")
    assert reply["payload"]["status"] == "ok"
    assert refused["payload"]["message"] == "Error 401: Unauthorized: role 'anon' cannot read public.todos"
    assert memory_store.channel("a", "realtime:inbox")[1] == []
    router.handle("a", frame("realtime:inbox", "access_token", {"access_token": token("anon")}))
    (again,) = client.take("a")
    assert again["payload"]["status"] == "error"  # still refused under anon
    router.handle("a", frame("realtime:inbox", "access_token", {"access_token": token()}))
    (subscribed,) = client.take("a")
    assert subscribed["payload"] == {"channel": "inbox", "extension": "postgres_changes",
                                     "message": "Subscribed to PostgreSQL", "status": "ok"}
    member, bindings = memory_store.channel("a", "realtime:inbox")
    assert member.refused is None and [b.role for b in bindings] == ["authenticated"]
    router.handle("a", frame("realtime:inbox", "access_token", {"access_token": token()}))
    assert client.take("a") == []  # nothing left to subscribe


def test_replication_ready_follows_the_stored_bindings(router, client):
    changes = [{"event": "*", "schema": "public", "table": "todos"}]
    join(router, "a", "realtime:room", {"postgres_changes": changes, "broadcast": {"replication_ready": True}})
    events = [(f["event"], f["payload"].get("extension"), f["payload"].get("message")) for f in client.take("a")]
    assert events == [("phx_reply", None, None), ("system", "postgres_changes", "Subscribed to PostgreSQL"),
                      ("system", "system", "Replication connection established")]


def test_joins_per_second_are_limited_with_supabases_code(router, client, monkeypatch):
    router.config = router.config.model_copy(update={"max_joins_per_second": 2, "max_channels_per_connection": 10})
    monkeypatch.setattr(time, "time", lambda: 2_000_000.5)
    for n in range(3):
        join(router, "a", f"realtime:{n}")
    assert reasons(client.take("a")) == ["ClientJoinRateLimitReached: Too many joins per second"]


def test_a_replay_join_counts_against_the_message_rate(router, client, monkeypatch):
    join(router, "a", "realtime:room", {"broadcast": {"ack": True}})
    client.take("a")
    now = [1_000_000.5]
    monkeypatch.setattr(time, "time", lambda: now[0])
    for n in range(3):
        router.handle("a", frame("realtime:room", "broadcast", {"type": "broadcast", "event": "e"}, str(n)))
    client.take("a")
    join(router, "a", "realtime:other", {"broadcast": {"replay": {"since": 0}}})
    assert reasons(client.take("a")) == ["MessagePerSecondRateLimitReached: Too many messages per second"]
    # Control: the same join without a replay is not a message and goes through.
    join(router, "a", "realtime:other")
    assert [f["payload"]["status"] for f in client.take("a")] == ["ok"]


def test_a_rejoin_ends_the_old_channel_and_keeps_one_place_in_the_count(router, client, memory_store):
    join(router, "a", "realtime:room", {"presence": {"enabled": True, "key": "ann"},
                                        "postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]})
    join(router, "b", "realtime:room", {"presence": {"enabled": True, "key": "bob"}})
    router.handle("a", frame("realtime:room", "presence", {"type": "presence", "event": "track",
                                                           "payload": {"status": "here"}}))
    client.frames.clear()
    join(router, "a", "realtime:room", {"postgres_changes": [{"event": "INSERT", "schema": "public",
                                                              "table": "todos"}]})
    (leave,) = [f for f in client.take("b") if f["event"] == "presence_diff"]
    assert list(leave["payload"]["leaves"]) == ["ann"]
    member, bindings = memory_store.channel("a", "realtime:room")
    assert member.presence is None and [b.event for b in bindings] == ["INSERT"]
    # The limit is two channels: the rejoined topic holds one place, so one more fits, not two.
    join(router, "a", "realtime:other")
    join(router, "a", "realtime:third")
    assert reasons(client.take("a")) == ["ChannelRateLimitReached: Too many channels"]
