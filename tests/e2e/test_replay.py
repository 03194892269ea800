"""Broadcast replay from the message log, with the real clients: `config.broadcast.replay`
replays a topic's `realtime.send` messages oldest first, says how many a limit left out, and
refuses bad requests with protocol-shaped errors."""
from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid

import pytest

from tests.e2e.clients import JsReplay
from tests.e2e.test_authorization import drain, user_token
from tests.e2e.test_delivery import wait_until
from tests.e2e.wire import Wire

POLICY = """
drop policy if exists replay_read on realtime.messages;
create policy replay_read on realtime.messages for select to authenticated
  using (realtime.topic() like 'replay-%' and extension = 'broadcast');
"""


@pytest.fixture
def readable(db):
    db.execute(POLICY)
    db.execute("update realtime.settings set value = '72' where key = 'log_retention_hours'")
    return db


def send_many(db, topic: str, count: int, private: bool = True) -> int:
    """Send `count` messages n=0..count-1 and wait until the fanout has logged them; returns the
    time (epoch ms) just before the first."""
    since = int(time.time() * 1000) - 1
    for n in range(count):
        db.execute("select realtime.send(%s::jsonb, 'tick', %s, %s)", (f'{{"n": {n}}}', topic, private))
    assert wait_until(lambda: db.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0)
    return since


def test_supabase_js_replays_the_oldest_first_and_says_how_many_the_limit_left_out(stack, readable, supabase_js):
    topic = f"replay-{uuid.uuid4()}"
    since = send_many(readable, topic, 100)
    token = user_token(1)
    first = JsReplay(stack.api_url, stack.key("anon"), topic,
                     {"private": True, "broadcast": {"replay": {"since": since, "limit": 25}}}, user_jwt=token,
                     client=supabase_js)
    try:
        got = [first.wait_for("broadcast")["message"] for _ in range(25)]
        assert [g["payload"]["n"] for g in got] == list(range(25))
        assert all(g["meta"]["replayed"] is True and g["event"] == "tick" for g in got)
        ids = [int(g["meta"]["id"]) for g in got]
        assert ids == sorted(ids) and len(set(ids)) == 25
        notice = first.wait_for("system")["payload"]
        assert notice["status"] == "ok" and notice["code"] == "replay_truncated"
        assert notice["left_out"] == 75 and notice["last_id"] == str(ids[-1])
        assert {"kind": "status", "status": "SUBSCRIBED", "error": None} in first.skipped
        # Live traffic follows the replay, with its id and without `replayed`.
        readable.execute("select realtime.send('{\"n\": 100}'::jsonb, 'tick', %s, true)", (topic,))
        live = first.wait_for("broadcast")["message"]
        assert live["payload"] == {"n": 100} and "replayed" not in live["meta"]
        assert int(live["meta"]["id"]) > ids[-1]
    finally:
        first.close()
    everything = JsReplay(stack.api_url, stack.key("anon"), topic,
                          {"private": True, "broadcast": {"replay": {"since": since, "limit": 101}}}, user_jwt=token,
                          client=supabase_js)
    try:
        got = [everything.wait_for("broadcast")["message"] for _ in range(101)]
        assert [g["payload"]["n"] for g in got] == list(range(101))
        assert all(g["meta"]["replayed"] for g in got)
        readable.execute("select realtime.send('{\"n\": 101}'::jsonb, 'tick', %s, true)", (topic,))
        assert everything.wait_for("broadcast")["message"]["payload"] == {"n": 101}
        # Nothing was left out, so no truncation notice came before the live message.
        assert not [line for line in everything.skipped if line["kind"] == "system"
                    and line["payload"].get("code") == "replay_truncated"]
    finally:
        everything.close()


def test_supabase_js_resumes_after_the_last_id_it_saw(stack, readable):
    topic = f"replay-{uuid.uuid4()}"
    since = send_many(readable, topic, 30)
    token = user_token(1)
    first = JsReplay(stack.api_url, stack.key("anon"), topic,
                     {"private": True, "broadcast": {"replay": {"since": since, "limit": 10}}}, user_jwt=token)
    try:
        last = [first.wait_for("broadcast")["message"] for _ in range(10)][-1]["meta"]["id"]
    finally:
        first.close()
    rest = JsReplay(stack.api_url, stack.key("anon"), topic,
                    {"private": True, "broadcast": {"replay": {"after": last, "limit": 100}}}, user_jwt=token)
    try:
        got = [rest.wait_for("broadcast")["message"]["payload"]["n"] for _ in range(20)]
        assert got == list(range(10, 30))
    finally:
        rest.close()


class PyReplay:
    """realtime-py on a private broadcast channel with a replay config, on its own loop thread."""

    def __init__(self, stack, topic: str, replay: dict, token: str):
        from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

        self.messages: queue.Queue = queue.Queue()
        self.system: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        states: queue.Queue = queue.Queue()

        async def start():
            self.client = AsyncRealtimeClient(f"{stack.api_url}/realtime/v1", token=token, auto_reconnect=False)
            await self.client.connect()
            ch = self.client.channel(topic, {"config": {"private": True, "broadcast": {"replay": replay}}})
            ch.on_broadcast("*", self.messages.put)
            ch.on_system(self.system.put)
            await ch.subscribe(lambda state, err: states.put(state))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=20)
        assert states.get(timeout=20) == RealtimeSubscribeStates.SUBSCRIBED

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_realtime_py_replays_the_oldest_first_and_says_how_many_the_limit_left_out(stack, readable):
    topic = f"replay-{uuid.uuid4()}"
    since = send_many(readable, topic, 100)
    token = user_token(1)
    cut = PyReplay(stack, topic, {"since": since, "limit": 25}, token)
    try:
        got = [cut.messages.get(timeout=20) for _ in range(25)]
        assert [g["payload"]["n"] for g in got] == list(range(25))
        assert all(g["meta"]["replayed"] is True for g in got)
        notice = cut.system.get(timeout=20)
        assert notice.status == "ok" and "75 more after position" in notice.message
    finally:
        cut.close()
    whole = PyReplay(stack, topic, {"since": since, "limit": 100}, token)
    try:
        got = [whole.messages.get(timeout=20) for _ in range(100)]
        assert [g["payload"]["n"] for g in got] == list(range(100))
        readable.execute("select realtime.send('{\"n\": 100}'::jsonb, 'tick', %s, true)", (topic,))
        assert whole.messages.get(timeout=20)["payload"] == {"n": 100}
        assert whole.system.empty()
    finally:
        whole.close()


@pytest.mark.parametrize("replay, problem", [
    ({"since": "yesterday"}, "config.broadcast.replay.since"),
    ({"since": -5}, "config.broadcast.replay.since"),
    ({"since": 0, "limit": 1_000_000}, "config.broadcast.replay.limit"),
    ({"since": 0, "limit": 0}, "config.broadcast.replay.limit"),
    ({"limit": 10}, "replay needs `since`"),
])
def test_a_bad_replay_request_is_refused_with_an_error_reply(stack, readable, replay, problem):
    wire = Wire(stack.ws_url, user_token(1))
    try:
        reply, _ = wire.join(f"realtime:replay-{uuid.uuid4()}", [], private=True, broadcast={"replay": replay})
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("InvalidJoinPayload")
        assert problem in reply["payload"]["response"]["reason"]
        # Control: the same connection joins with a good request.
        ok, _ = wire.join(f"realtime:replay-{uuid.uuid4()}", [], private=True, broadcast={"replay": {"since": 0}})
        assert ok["payload"]["status"] == "ok"
    finally:
        wire.close()


def test_a_replay_of_a_topic_the_subscriber_cannot_read_is_refused(stack, readable):
    topic = f"secret-{uuid.uuid4()}"
    send_many(readable, topic, 3)
    wire = Wire(stack.ws_url, user_token(1))
    try:
        reply, _ = wire.join(f"realtime:{topic}", [], private=True, broadcast={"replay": {"since": 0}})
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("Unauthorized")
        assert drain(wire, 1.0) == []
    finally:
        wire.close()


def test_public_channels_replay_only_public_messages(stack, readable):
    topic = f"open-{uuid.uuid4()}"
    readable.execute("select realtime.send('{\"n\": \"private\"}'::jsonb, 'tick', %s, true)", (topic,))
    send_many(readable, topic, 3, private=False)
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        reply, _ = wire.join(f"realtime:{topic}", [], broadcast={"replay": {"since": 0}})
        assert reply["payload"]["status"] == "ok"
        got = [f for f in drain(wire) if f["event"] == "broadcast"]
        assert [f["payload"]["payload"]["n"] for f in got] == [0, 1, 2]
    finally:
        wire.close()
