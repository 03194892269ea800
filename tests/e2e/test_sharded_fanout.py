"""The fanout posting through K worker processes, on the local stack with real WebSocket clients:
per-connection order, a poster killed mid-round (the batch is not acked and comes again, nothing
lost), 410 and owed frames from a shard handled as in the unsharded path, small rounds posted by
the drainer itself."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from aiohttp import web

from ripple.gateway import lean_poster
from ripple.outbox.drain import WakeEvent, fanout
from ripple.shards.api import ShardedApi
from ripple.shards.process import ProcessTransport
from ripple.shards.wire import shard_of
from ripple.store import Binding, store, table_key
from tests.e2e.tables import published
from tests.e2e.test_delivery import wait_until
from tests.e2e.wire import Wire, before_marker

pytestmark = pytest.mark.timeout(180)


class GatewayProxy:
    """An HTTP hop in front of the stack's `@connections` API, the faults a test needs on the
    posters' side of it: `fail[cid] = [count, status, code]` answers that connection's next
    `count` posts with `status`; while `closed`, every post is held (noting whose) until `release()`."""

    def __init__(self, target: str):
        self.target = target
        self.fail: dict[str, list] = {}
        self.failed = 0
        self.closed = False
        self.held: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""
        self._open: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> GatewayProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._open = asyncio.Event()
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/@connections/{connection_id}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _handle(self, request: web.Request) -> web.Response:
        cid = request.match_info["connection_id"]
        body = await request.read()
        if self.closed:
            self.held.add(cid)
            assert self._open is not None
            await self._open.wait()
        fault = self.fail.get(cid)
        if request.method == "POST" and fault and fault[0] != 0:
            fault[0] -= 1
            self.failed += 1
            return web.json_response({"message": fault[2]}, status=fault[1], headers={"x-amzn-ErrorType": fault[2]})
        assert self._session is not None
        async with self._session.request(request.method, f"{self.target}{request.raw_path}", data=body) as answer:
            headers = {k: v for k, v in answer.headers.items() if k.lower() == "x-amzn-errortype"}
            return web.Response(status=answer.status, body=await answer.read(), headers=headers)

    def release(self) -> None:
        def open_gate() -> None:
            self.closed = False
            assert self._open is not None
            self._open.set()

        self.loop.call_soon_threadsafe(open_gate)

    def stop(self) -> None:
        async def stop() -> None:
            assert self._runner is not None and self._session is not None
            await self._runner.cleanup()
            await self._session.close()

        self.release()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def proxy(stack, monkeypatch) -> Iterator[GatewayProxy]:
    """The proxy, named as the endpoint the workers inherit (they start on the first wide round)."""
    hop = GatewayProxy(stack.api_url).start()
    monkeypatch.setenv("RIPPLE_CONNECTIONS_ENDPOINT", hop.url)
    yield hop
    hop.stop()


@contextmanager
def sharded_fanout(shards: int, threshold: int, endpoint: str | None = None) -> Iterator[ShardedApi]:
    """The stack's fanout posting through `shards` worker processes for rounds of `threshold`
    posts or more (its own posts through `endpoint` when given); as before afterwards."""
    drainer = fanout()
    real = drainer.api
    api = ShardedApi(lean_poster(endpoint) if endpoint else real.client, concurrency=real.concurrency,
                     keep_owed=True, transport=ProcessTransport(shards), shards=shards, threshold=threshold)
    drainer.api = api
    try:
        yield api
    finally:
        drainer.api = real
        assert api.transport is not None
        api.transport.close()


def subscribers(stack, table: str, count: int) -> list[tuple[Wire, str]]:
    """`count` sockets subscribed to inserts on `table`, each on a topic of its own, with their
    connection ids."""
    joined = []
    for index in range(count):
        wire = Wire(stack.ws_url, stack.key("anon"))
        topic = f"realtime:{table}-{index}"
        wire.join(topic, [{"event": "INSERT", "schema": "public", "table": table}])
        (member,) = store().members(topic)
        joined.append((wire, member.connection_id))
    return joined


def received(wire: Wire, table: str, count: int, timeout: float = 60.0) -> list[int]:
    """The `n` of the first `count` inserts on `table` that reach `wire`."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        frame = wire.recv(timeout=max(0.1, deadline - time.monotonic()))
        if frame["event"] == "postgres_changes" and frame["payload"]["data"]["table"] == table:
            got.append(frame["payload"]["data"]["record"]["n"])
    return got


def rest(wire: Wire, db, table: str) -> list[int]:
    """The `n` of inserts on `table` still reaching `wire` for everything written so far."""
    return [f["payload"]["data"]["record"]["n"] for f in before_marker(wire, db)
            if f["event"] == "postgres_changes" and f["payload"]["data"]["table"] == table]


def insert(db, table: str, count: int) -> None:
    with db.transaction():
        for n in range(count):
            db.execute(f"insert into {table} (n) values (%s)", (n,))


def close(joined: list[tuple[Wire, str]]) -> None:
    for wire, _ in joined:
        wire.close()


@pytest.mark.parametrize("shards", [2, 3])
def test_every_subscriber_gets_every_change_once_in_order_across_posters(stack, db, shards):
    table = f"sharded_order_{shards}"
    published(db, table, "n int not null")
    joined = subscribers(stack, table, 24)
    try:
        # Connection ids are random: the posters with work are those of the shards they land in.
        busy = {shard_of(cid, shards) for _, cid in joined}
        assert len(busy) > 1
        with sharded_fanout(shards, threshold=50) as api:
            insert(db, table, 40)  # one batch: 960 posts in one round
            for wire, _ in joined:
                assert received(wire, table, 40) == list(range(40))
            for wire, _ in joined:
                assert rest(wire, db, table) == []  # none twice
            assert wait_until(lambda: api.sharded_rounds >= 1, timeout=30)  # counted once every shard answered
            assert isinstance(api.transport, ProcessTransport) and api.transport.started == len(busy)
    finally:
        close(joined)


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "control"])
def test_a_poster_killed_mid_round_loses_nothing(stack, db, proxy, kill):
    table = f"sharded_kill_{int(kill)}"
    published(db, table, "n int not null")
    joined = subscribers(stack, table, 20)
    changes = 30
    try:
        assert {shard_of(cid, 2) for _, cid in joined} == {0, 1}
        with sharded_fanout(2, threshold=50, endpoint=proxy.url) as api:
            stack.bridge.results.clear()
            proxy.closed = kill
            insert(db, table, changes)
            if kill:
                # Both posters are mid-round (each has a post held): poster 0 is killed.
                assert wait_until(lambda: {shard_of(cid, 2) for cid in proxy.held} == {0, 1}, timeout=60)
                assert isinstance(api.transport, ProcessTransport)
                first, _ = api.transport.pids
                os.kill(first, signal.SIGKILL)
                proxy.release()
            seen = {cid: Counter(received(wire, table, changes) + rest(wire, db, table)) for wire, cid in joined}
            for counts in seen.values():
                assert set(counts) == set(range(changes))  # nothing lost
            duplicates = sum(n - 1 for counts in seen.values() for n in counts.values())
            # The wake that drained the batch has returned its counters.
            assert wait_until(lambda: any(r["changes"] >= changes for r in stack.bridge.results), timeout=30)
            failures = [r["shard_failures"] for r in stack.bridge.results]
            if kill:
                # Poster 1 had posted its whole shard when the round failed: the batch was not
                # acked, so its subscribers got every change again.
                assert sum(failures) == 1 and api.sharded_rounds >= 1
                assert all(min(seen[cid].values()) >= 2 for _, cid in joined if shard_of(cid, 2) == 1)
                assert duplicates >= changes * sum(1 for _, cid in joined if shard_of(cid, 2) == 1)
            else:
                assert sum(failures) == 0 and duplicates == 0 and api.sharded_rounds >= 1
                # The posters' posts are counted in the wake's counters, as the drainer's own are.
                assert any(r["changes"] == changes and r["posts"] == r["deliveries"] == changes * len(joined)
                           for r in stack.bridge.results), list(stack.bridge.results)
    finally:
        close(joined)


def test_a_gone_connection_found_by_a_poster_is_removed(stack, db):
    table = "sharded_gone"
    published(db, table, "n int not null")
    ghost = "U2hhcmRHaG9zdA="  # rows whose $disconnect never ran: the gateway answers 410
    store().add_bindings([Binding(
        connection_id=ghost, topic="realtime:sharded-ghost", id=1, event="*", schema="public", table=table,
        bucket=table_key("public", table), vsn="1.0.0")], {}, int(time.time()) + 600)
    joined = subscribers(stack, table, 20)
    try:
        with sharded_fanout(2, threshold=50) as api:
            insert(db, table, 10)  # 210 posts, the ghost's among them
            for wire, _ in joined:
                assert received(wire, table, 10) == list(range(10))  # the control
            assert wait_until(lambda: not store().members("realtime:sharded-ghost"), timeout=20)
            assert wait_until(lambda: api.sharded_rounds >= 1, timeout=30)
    finally:
        close(joined)


@pytest.mark.parametrize("status,code", [(429, "LimitExceededException"), (500, "InternalServerErrorException")])
def test_frames_a_poster_could_not_get_through_are_owed_and_arrive_in_order(stack, db, proxy, status, code):
    table = f"sharded_owed_{status}"
    published(db, table, "n int not null")
    joined = subscribers(stack, table, 20)
    (subject, target), others = joined[0], joined[1:]
    try:
        with sharded_fanout(2, threshold=100, endpoint=proxy.url) as api:
            # Seven failures: the poster's five tries of the first frame (the rest of the batch
            # is owed to this subscriber), then two of the drainer's retry at the next drain.
            proxy.fail[target] = [7, status, code]
            insert(db, table, 50)
            for wire, _ in others:
                assert received(wire, table, 50) == list(range(50))
            assert received(subject, table, 50) == list(range(50))
            assert rest(subject, db, table) == []
            assert proxy.failed == 7 and wait_until(lambda: api.sharded_rounds >= 1, timeout=30)
    finally:
        close(joined)


def test_small_rounds_are_posted_by_the_drainer_and_a_wide_one_by_the_posters(stack, db):
    table = "sharded_small"
    published(db, table, "n int not null")
    joined = subscribers(stack, table, 3)
    try:
        with sharded_fanout(2, threshold=100) as api:
            transport = api.transport
            assert isinstance(transport, ProcessTransport)
            db.execute(f"insert into {table} (n) values (-1)")  # 3 posts
            for wire, _ in joined:
                assert received(wire, table, 1) == [-1]
            assert api.sharded_rounds == 0 and api.posts >= 3
            assert (transport.started, transport.rounds, transport.pids) == (0, 0, [])
            insert(db, table, 40)  # the control: 120 posts in one round
            for wire, _ in joined:
                assert received(wire, table, 40) == list(range(40))
            assert wait_until(lambda: api.sharded_rounds >= 1, timeout=30)  # counted once every shard answered
            # One poster per shard that has work (three connections may all share one).
            assert transport.started == len({shard_of(cid, 2) for _, cid in joined}) and transport.rounds >= 1
    finally:
        close(joined)


def test_a_batch_no_poster_can_take_is_left_unacked_and_delivered_once_posters_work(stack, db, monkeypatch):
    table = "sharded_broken"
    published(db, table, "n int not null")
    joined = subscribers(stack, table, 5)
    try:
        # Posters that cannot start (no endpoint to post to): every wide round fails.
        monkeypatch.delenv("RIPPLE_CONNECTIONS_ENDPOINT")
        with sharded_fanout(2, threshold=10):
            insert(db, table, 10)  # 50 posts
            # One wake takes the batch twice, then leaves it for the next wake or sweep.
            stats = fanout().run(WakeEvent())
            assert (stats.shard_failures, stats.batches, stats.changes) == (2, 0, 0)
            pending = db.execute("select count(*) from realtime.outbox_pending where table_name = %s", (table,))
            assert pending.fetchone()[0] == 10  # not acked
            monkeypatch.setenv("RIPPLE_CONNECTIONS_ENDPOINT", stack.api_url)  # new posters start
            for wire, _ in joined:
                assert received(wire, table, 10) == list(range(10))
            for wire, _ in joined:
                assert rest(wire, db, table) == []
    finally:
        close(joined)
