"""Replay of postgres_changes from the message log: a join with
`config.broadcast.replay_changes` gets the changes it missed — matched against its bindings,
authorized with its current claims on the stored row images — in order, before live ones, with
nothing missed or doubled at the boundary, also across a client's own reconnect."""
from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from ripple.gateway import connections_api
from tests.e2e.clients import JsListener, _node
from tests.e2e.test_authorization import DOCS, drain, tenants, user_token  # noqa: F401  (fixture)
from tests.e2e.test_delivery import wait_until
from tests.e2e.test_faults import FailingPosts
from tests.e2e.wire import Wire


def last_position(db) -> int:
    assert wait_until(lambda: db.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0)
    return db.execute("select last_position from realtime.log_state").fetchone()[0]


def visible(db, after: int, org: int, title_prefix: str) -> list[int]:
    """The positions of the logged docs changes after `after` that a member of `org` may read:
    the row image realtime.authorize checks (the new row; the old one for a DELETE) is in `org`."""
    return [p for (p,) in db.execute(
        "select position from realtime.log_entries where kind = 'change' and table_name = 'docs' "
        "and position > %s and (case when op = 'DELETE' then old_record else record end) "
        "->> 'organization_id' = %s and coalesce(record, old_record) ->> 'title' like %s "
        "order by position", (after, str(org), title_prefix + "%"))]


def join(wire: Wire, topic: str, bindings: list[dict], replay: dict) -> tuple[dict, list[dict]]:
    """Join asking for a replay; returns the reply and every frame after it (replay, system)."""
    wire.send(topic, "phx_join", {"config": {"postgres_changes": bindings,
                                             "broadcast": {"replay_changes": replay}}}, join_ref="j")
    reply = wire.recv()
    assert reply["event"] == "phx_reply", reply
    return reply, drain(wire)


def position(payload: dict) -> int:
    tag = payload["errors"][0]
    assert tag.startswith("position:"), payload
    return int(tag.removeprefix("position:"))


def test_a_join_replays_what_its_claims_may_read_then_goes_live(stack, tenants):
    db = tenants
    start = last_position(db)
    tag = f"replay-{uuid.uuid4()}"
    ids = {}
    for org in (1, 2, 1):
        ids[org] = db.execute("insert into docs (organization_id, owner, title) values (%s, %s, %s) returning id",
                              (org, str(uuid.uuid4()), f"{tag}-{org}")).fetchone()[0]
    # Rows moving between tenants, and deletes on both sides.
    db.execute("update docs set organization_id = 2, title = title || '-moved' where id = %s", (ids[1],))
    db.execute("update docs set organization_id = 1, title = title || '-moved' where id = %s", (ids[2],))
    db.execute("delete from docs where id = %s", (ids[2],))
    moved_away = db.execute("insert into docs (organization_id, owner, title) values (2, %s, %s) returning id",
                            (str(uuid.uuid4()), f"{tag}-2b")).fetchone()[0]
    db.execute("delete from docs where id = %s", (moved_away,))
    last_position(db)
    for org in (1, 2):
        expected = visible(db, start, org, tag)
        wire = Wire(stack.ws_url, user_token(org))
        try:
            reply, frames = join(wire, "realtime:docs-replay", [DOCS], {"after": start})
            assert reply["payload"]["status"] == "ok"
            got = [f for f in frames if f["event"] == "postgres_changes"]
            datas = [f["payload"]["data"] for f in got if (f["payload"]["data"].get("record") or
                                                           f["payload"]["data"].get("old_record"))
                     .get("title", "").startswith(tag)]
            assert [position(d) for d in datas] == expected and expected
            for d in datas:
                image = d["old_record"] if d["type"] == "DELETE" else d["record"]
                assert image["organization_id"] == org
                assert "secret" not in image  # column privileges hold in replays too
            # Live after the replay, still with its position.
            db.execute("insert into docs (organization_id, owner, title) values (%s, %s, %s)",
                       (org, str(uuid.uuid4()), f"{tag}-live"))
            live = wire.recv()
            assert live["event"] == "postgres_changes" and position(live["payload"]["data"]) > expected[-1]
        finally:
            wire.close()


@pytest.mark.parametrize("replay, problem", [
    ({"after": "last"}, "config.broadcast.replay_changes.after"),
    ({"since": 1.5}, "config.broadcast.replay_changes.since"),
    ({"after": 0, "limit": 100_000}, "config.broadcast.replay_changes.limit"),
    ({}, "replay_changes needs"),
])
def test_a_bad_changes_replay_is_refused_with_an_error_reply(stack, tenants, replay, problem):
    wire = Wire(stack.ws_url, user_token(1))
    try:
        reply, _ = join(wire, "realtime:docs-bad", [DOCS], replay)
        assert reply["payload"]["status"] == "error"
        assert problem in reply["payload"]["response"]["reason"]
        ok, _ = join(wire, "realtime:docs-bad", [DOCS], {"after": 0, "limit": 1})
        assert ok["payload"]["status"] == "ok"
    finally:
        wire.close()


def logged_docs(db, prefix: str, count: int) -> tuple[int, str]:
    """`count` of tenant 1's docs inserted and logged: the position before them and their tag
    (titles `{tag}-0`…)."""
    start = last_position(db)
    tag = f"{prefix}-{uuid.uuid4()}"
    for n in range(count):
        db.execute("insert into docs (organization_id, owner, title) values (1, %s, %s)",
                   (str(uuid.uuid4()), f"{tag}-{n}"))
    last_position(db)
    return start, tag


def test_a_limit_says_how_many_changes_it_left_out(stack, tenants):
    db = tenants
    start, tag = logged_docs(db, "cut", 5)
    wire = Wire(stack.ws_url, user_token(1))
    try:
        _, got = join(wire, "realtime:docs-cut", [{**DOCS, "filter": "organization_id=eq.1"}],
                      {"after": start, "limit": 3})
        changes = [f for f in got if f["event"] == "postgres_changes"]
        assert [c["payload"]["data"]["record"]["title"] for c in changes] == [f"{tag}-{n}" for n in range(3)]
        notice = next(f for f in got if f["event"] == "system" and f["payload"].get("code") == "replay_truncated")
        assert notice["payload"]["left_out"] == 2
        assert notice["payload"]["last_id"] == str(position(changes[-1]["payload"]["data"]))
    finally:
        wire.close()


class ThrottledChanges(FailingPosts):
    """FailingPosts for postgres_changes frames only."""

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]:
        if b'"event":"postgres_changes"' not in data:
            return await self._poster.post(connection_id, data)
        return await super().post(connection_id, data)


def test_a_replay_the_gateway_throttles_is_owed_and_arrives_in_order_before_live(stack, tenants):
    db = tenants
    start, tag = logged_docs(db, "owed", 4)
    api = connections_api()
    before = set(stack.gateway._connections)
    wire = Wire(stack.ws_url, user_token(1))
    try:
        (connection,) = set(stack.gateway._connections) - before
        # Every try of the replay's first frame is throttled (the join's reply goes through): the
        # whole replay is owed.
        throttled = ThrottledChanges(api.poster, connection, api.attempts, 429, "LimitExceededException")
        original, api.client = api.client, throttled
        try:
            reply, frames = join(wire, "realtime:docs-owed", [{**DOCS, "filter": "organization_id=eq.1"}],
                                 {"after": start})
        finally:
            api.client = original
        assert reply["payload"]["status"] == "ok" and throttled.failed == api.attempts
        db.execute("insert into docs (organization_id, owner, title) values (1, %s, %s)",
                   (str(uuid.uuid4()), f"{tag}-live"))
        titles = [f["payload"]["data"]["record"]["title"] for f in frames if f["event"] == "postgres_changes"]
        deadline = time.monotonic() + 20
        while f"{tag}-live" not in titles and time.monotonic() < deadline:
            frame = wire.recv(timeout=max(0.1, deadline - time.monotonic()))
            if frame["event"] == "postgres_changes":
                titles.append(frame["payload"]["data"]["record"]["title"])
        assert [t for t in titles if t.startswith(tag)] == [f"{tag}-{n}" for n in range(4)] + [f"{tag}-live"]
    finally:
        wire.close()


class JsResume(JsListener):
    """supabase-js that keeps its last position in the channel config (tests/js/resume.mjs)."""

    def __init__(self, api_url: str, key: str, channel: str, bindings: list[dict], after: int, user_jwt: str,
                 client: str = "current"):
        self.statuses: list[str] = []
        self._start(_node("resume.mjs", [api_url, key, channel, json.dumps(bindings), str(after), user_jwt], client))

    def next_change(self, timeout: float = 30.0) -> dict:
        """The next change; statuses on the way (a reconnect's CHANNEL_ERROR, then SUBSCRIBED
        again) are recorded, not failures."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no change from supabase-js; statuses {self.statuses}") from None
            if line["kind"] == "change":
                return line
            if line["kind"] == "status":
                self.statuses.append(line["status"])


def kill(stack, connection_id: str) -> None:
    """Close the client's socket from the server side, as a deploy or a lost network does."""
    request = urllib.request.Request(f"{stack.api_url}/@connections/{urllib.parse.quote(connection_id, safe='')}",
                                     method="DELETE")
    urllib.request.urlopen(request, timeout=5).close()


def write_concurrently(stack, tag: str, writers: int = 4, each: int = 50) -> None:
    """`writers` connections each committing `each` changes to both tenants' docs: inserts, rows
    moved between tenants, deletes."""
    import psycopg

    def one(w: int) -> None:
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            for n in range(each):
                org = 1 if n % 3 else 2
                row = conn.execute("insert into docs (organization_id, owner, title) values (%s, %s, %s) "
                                   "returning id", (org, str(uuid.uuid4()), f"{tag}-{w}-{n}")).fetchone()[0]
                if n % 7 == 0:
                    conn.execute("update docs set organization_id = 3 - organization_id where id = %s", (row,))
                if n % 11 == 0:
                    conn.execute("delete from docs where id = %s", (row,))
                time.sleep(0.01)

    threads = [threading.Thread(target=one, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_supabase_js_gets_every_change_missed_while_disconnected_exactly_once(stack, tenants, supabase_js):
    db = tenants
    start = last_position(db)
    tag = f"js-resume-{uuid.uuid4()}"
    before = set(stack.gateway._connections)
    js = JsResume(stack.api_url, stack.key("anon"), "docs-resume", [DOCS], start, user_token(1), client=supabase_js)
    try:
        js.wait_for("status", status="SUBSCRIBED")
        js.statuses.append("SUBSCRIBED")
        (connection,) = set(stack.gateway._connections) - before
        writing = threading.Thread(target=write_concurrently, args=(stack, tag))
        writing.start()
        time.sleep(0.2)
        kill(stack, connection)  # changes keep committing while the client is away and rejoins
        writing.join(timeout=90)
        last_position(db)  # everything written is drained and logged
        expected = visible(db, start, 1, tag)
        assert len(expected) > 100
        got: list[int] = []
        while len(got) < len(expected):
            try:
                line = js.next_change()
            except TimeoutError as exc:
                missing = sorted(set(expected) - set(got))
                raise AssertionError(f"{len(got)} of {len(expected)}; missing {missing[:20]}") from exc
            if line["payload"]["new"].get("title", line["payload"]["old"].get("title", "")).startswith(tag) \
                    or line["payload"]["eventType"] == "DELETE":
                got.append(line["position"])
        assert got == expected  # in order, none twice, none missing
        db.execute("insert into docs (organization_id, owner, title) values (1, %s, %s)",
                   (str(uuid.uuid4()), f"{tag}-live"))
        assert js.next_change()["payload"]["new"]["title"] == f"{tag}-live"
        # The client lost its channel and rejoined on its own.
        assert "CHANNEL_ERROR" in js.statuses and js.statuses.count("SUBSCRIBED") >= 2
    finally:
        js.close()


class PyResume:
    """realtime-py with its own reconnect, keeping the last position it saw in the channel's
    replay_changes config so the automatic rejoin asks for what it missed."""

    def __init__(self, stack, topic: str, after: int, token: str):
        from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

        self.changes: queue.Queue = queue.Queue()
        self.states: list = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        subscribed: queue.Queue = queue.Queue()
        resume = {"after": after, "limit": 1000}

        def on_change(payload: dict) -> None:
            # The app's whole resume logic: remember the last position seen.
            resume["after"] = position(payload["data"])
            self.changes.put(payload["data"])

        def on_state(state, err) -> None:
            self.states.append(state)
            subscribed.put(state)

        async def start():
            self.client = AsyncRealtimeClient(f"{stack.api_url}/realtime/v1", token=token, auto_reconnect=True)
            await self.client.connect()
            ch = self.client.channel(topic, {"config": {"broadcast": {"replay_changes": resume}}})
            ch.on_postgres_changes("*", schema="public", table="docs", callback=on_change)
            await ch.subscribe(on_state)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=20)
        assert subscribed.get(timeout=20) == RealtimeSubscribeStates.SUBSCRIBED

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_realtime_py_gets_every_change_missed_while_disconnected_exactly_once(stack, tenants):
    from realtime import RealtimeSubscribeStates

    db = tenants
    start = last_position(db)
    tag = f"py-resume-{uuid.uuid4()}"
    before = set(stack.gateway._connections)
    py = PyResume(stack, "docs-py-resume", start, user_token(2))
    try:
        (connection,) = set(stack.gateway._connections) - before
        writing = threading.Thread(target=write_concurrently, args=(stack, tag))
        writing.start()
        time.sleep(0.2)
        kill(stack, connection)
        writing.join(timeout=90)
        last_position(db)
        expected = visible(db, start, 2, tag)
        assert len(expected) > 40
        got = []
        while len(got) < len(expected):
            data = py.changes.get(timeout=30)
            image = data.get("old_record") if data["type"] == "DELETE" else data.get("record")
            assert image["organization_id"] == 2  # the other tenant's rows never appear
            if image["title"].startswith(tag):
                got.append(position(data))
        assert got == expected
        db.execute("insert into docs (organization_id, owner, title) values (2, %s, %s)",
                   (str(uuid.uuid4()), f"{tag}-live"))
        assert py.changes.get(timeout=20)["record"]["title"] == f"{tag}-live"
        assert RealtimeSubscribeStates.CHANNEL_ERROR in py.states
        assert py.states.count(RealtimeSubscribeStates.SUBSCRIBED) >= 2
    finally:
        py.close()
