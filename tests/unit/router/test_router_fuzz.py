"""Arbitrary frames into the router's entry point: no exception escapes, every answer is a
protocol frame, and another connection's rows never change."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple.catalog import ChannelAccess, TableInfo
from ripple.config import Settings
from ripple.gateway import ConnectionsApi
from ripple.router.router import Router
from ripple.store import MemoryStore
from tests.unit.conftest import UNIT_SECRET, RecordingClient, StaticCatalog, connect

EVENTS = ["phx_join", "phx_leave", "heartbeat", "access_token", "broadcast", "presence", "shout", ""]
TOPICS = ["realtime:room", "phoenix", "realtime:\ud83d", "realtime:" + "x" * 2000, "realtime:a\x00b", ""]
REPLY_EVENTS = {"phx_reply", "phx_error", "system", "presence_state", "presence_diff", "broadcast", "phx_close"}

# JSON values with the strings clients actually produce, lone surrogates included.
text = st.one_of(st.text(max_size=20), st.sampled_from(["\ud83d", "\x00", "*", "public", "todos", "id=eq.1"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20)
binding = st.fixed_dictionaries({}, optional={
    "event": st.one_of(st.sampled_from(["*", "INSERT", "UPDATE", "DELETE"]), json_values),
    "schema": st.one_of(st.just("public"), json_values), "table": st.one_of(st.just("todos"), json_values),
    "filter": st.one_of(st.sampled_from(["id=eq.1", "title=like.*x*", "id=in.(1,2)"]), json_values),
    "select": json_values})
config = st.fixed_dictionaries({}, optional={
    "postgres_changes": st.one_of(st.lists(binding, max_size=3), json_values),
    "broadcast": st.one_of(st.fixed_dictionaries({"self": st.booleans(), "ack": st.booleans()}), json_values),
    "presence": st.one_of(st.fixed_dictionaries({"key": text, "enabled": st.booleans()}), json_values),
    "private": json_values})
payload = st.one_of(
    st.fixed_dictionaries({"config": config}, optional={"access_token": json_values}),
    st.fixed_dictionaries({"type": st.just("broadcast"), "event": text, "payload": json_values}),
    st.fixed_dictionaries({"type": st.just("presence"), "event": st.sampled_from(["track", "untrack", "x"]),
                           "payload": json_values}),
    json_values)
v1 = st.builds(lambda t, e, p, r, j: json.dumps({"topic": t, "event": e, "payload": p, "ref": r, "join_ref": j}),
               st.one_of(st.sampled_from(TOPICS), json_values), st.one_of(st.sampled_from(EVENTS), json_values),
               payload, st.one_of(st.none(), st.integers(), text, json_values), st.one_of(st.none(), text))
v2 = st.builds(lambda j, r, t, e, p: json.dumps([j, r, t, e, p]), st.one_of(st.none(), text), text,
               st.sampled_from(TOPICS), st.sampled_from(EVENTS), payload)
frames = st.one_of(v1, v2, st.text(max_size=50), st.just("[" * 2000 + "]" * 2000),
                   st.just('{"topic":"realtime:x","event":"phx_join","payload":' + "[" * 900 + "]" * 900 + "}"))


def fresh() -> tuple[Router, RecordingClient, MemoryStore]:
    store, client = MemoryStore(), RecordingClient()
    for cid in ("fuzzer", "bystander"):
        connect(store, cid)
    catalog = StaticCatalog(tables={("public", "todos"): TableInfo(True, True, {"id": "int8", "title": "text"})},
                            access={("anon", "room"): ChannelAccess(True, True, True, True)})
    router = Router(store=store, api=ConnectionsApi(client, concurrency=1), catalog=catalog,
                    config=Settings(jwt_secret=UNIT_SECRET))
    router.handle("bystander", json.dumps({"topic": "realtime:room", "event": "phx_join", "ref": "1",
                                           "payload": {"config": {"presence": {"key": "b"},
                                                       "postgres_changes": [{"event": "*", "schema": "public",
                                                                             "table": "todos"}]}}}))
    client.take("bystander")
    return router, client, store


def bystanders_rows(store: MemoryStore):
    return store.get_connection("bystander"), store.channel("bystander", "realtime:room")


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    from ripple.config import settings as cached

    monkeypatch.setenv("RIPPLE_JWT_SECRET", UNIT_SECRET)
    cached.cache_clear()
    yield
    monkeypatch.undo()
    cached.cache_clear()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=4))
def test_any_frames_get_protocol_answers_and_leave_other_connections_alone(batch):
    router, client, store = fresh()
    before = bystanders_rows(store)
    for body in batch:
        router.handle("fuzzer", body)  # raises nothing
    for frame in client.frames.get("fuzzer", []):
        assert frame["event"] in REPLY_EVENTS, frame
        if frame["event"] == "phx_reply":
            assert frame["payload"]["status"] in ("ok", "error")
            assert isinstance(frame["payload"]["response"], dict)
        if frame["event"] == "phx_reply" and frame["payload"]["status"] == "error":
            assert frame["payload"]["response"].get("reason") != \
                "InternalError: the server could not handle this message", frame
    assert bystanders_rows(store) == before


@pytest.mark.parametrize("body", [
    '{"topic":"realtime:\\ud83d","event":"phx_join","payload":{"config":{}},"ref":"1"}',
    '{"topic":"realtime:x","event":"phx_join","payload":{"config":{}},"ref":"\\ud83d"}',
    '{"topic":"realtime:x","event":"phx_join","payload":' + "[" * 1000 + "]" * 1000 + ',"ref":"1"}',
    '{"topic":"realtime:x","event":"phx_join","payload":{"config":{"postgres_changes":[{"event":["*"]}]}},"ref":"1"}',
    json.dumps({"topic": "realtime:" + "x" * 1500, "event": "phx_join", "payload": {"config": {}}, "ref": "1"}),
    json.dumps({"topic": "realtime:a\x00b", "event": "phx_join", "payload": {"config": {"private": True}}, "ref": "1"}),
])
def test_the_frames_that_broke_handlers_are_answered_and_the_connection_still_works(body):
    router, client, store = fresh()
    router.handle("fuzzer", body)
    answers = client.take("fuzzer")
    refusals = [a for a in answers if a["event"] == "phx_error"
                or (a["event"] == "phx_reply" and a["payload"]["status"] == "error")
                or (a["event"] == "system" and a["payload"]["status"] == "error")]
    assert len(refusals) == 1, answers
    assert "InternalError" not in json.dumps(refusals)
    router.handle("fuzzer", json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "9"}))
    (heartbeat,) = client.take("fuzzer")
    assert heartbeat["payload"]["status"] == "ok"
