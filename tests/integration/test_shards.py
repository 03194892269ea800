"""Sharded posting through real worker processes, against a real HTTP endpoint shaped like
`@connections` (it checks every signature with botocore): per-connection order across workers,
410 and owed frames merged back, small rounds kept in-process, a worker killed or stuck mid-round,
and no worker outliving its parent."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ripple.gateway import Delivery
from ripple.poster import LeanPoster
from ripple.shards.api import ShardedApi
from ripple.shards.process import ProcessTransport
from ripple.shards.wire import ShardFailed, shard_of
from ripple.sigv4 import Signer
from tests.integration.test_poster import CREDS, REGION, Endpoint, frames

pytestmark = pytest.mark.timeout(120)


class GatedEndpoint(Endpoint):
    """The endpoint, holding every request while `closed` (noting whose) until `release()`."""

    def __init__(self) -> None:
        super().__init__(CREDS)
        self.closed = False
        self.held: set[str] = set()
        self._open: asyncio.Event | None = None

    async def _handle(self, request):
        if self.closed:
            if self._open is None:
                self._open = asyncio.Event()
            self.held.add(request.match_info["connection_id"])
            await self._open.wait()
        return await super()._handle(request)

    def release(self) -> None:
        def open_gate() -> None:
            self.closed = False
            if self._open is not None:
                self._open.set()

        self.loop.call_soon_threadsafe(open_gate)


@pytest.fixture
def endpoint(monkeypatch) -> Iterator[GatedEndpoint]:
    """The endpoint, and the environment a worker inherits to sign for it."""
    server = GatedEndpoint().start()
    for name, value in (("AWS_ACCESS_KEY_ID", CREDS.access_key), ("AWS_SECRET_ACCESS_KEY", CREDS.secret_key),
                        ("AWS_SESSION_TOKEN", CREDS.token), ("AWS_DEFAULT_REGION", REGION),
                        ("RIPPLE_CONNECTIONS_ENDPOINT", server.url)):
        monkeypatch.setenv(name, value)
    yield server
    server.release()
    server.stop()


def sharded(endpoint: Endpoint, shards: int, threshold: int = 10) -> ShardedApi:
    poster = LeanPoster(endpoint.url, Signer(CREDS, REGION, "execute-api"), limit=64)
    return ShardedApi(poster, concurrency=64, base_backoff=0.001, max_backoff=0.005, keep_owed=True,
                      transport=ProcessTransport(shards), shards=shards, threshold=threshold, timeout=60)


@pytest.fixture
def made() -> Iterator[list[ShardedApi]]:
    """Every ShardedApi a test makes: their workers are stopped after it."""
    apis: list[ShardedApi] = []
    yield apis
    for api in apis:
        assert api.transport is not None
        api.transport.close()


def transport(api: ShardedApi) -> ProcessTransport:
    assert isinstance(api.transport, ProcessTransport)
    return api.transport


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting to be reaped has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("shards", [2, 3])
def test_every_connection_gets_its_frames_in_order_from_its_worker(endpoint, made, shards) -> None:
    made.append(api := sharded(endpoint, shards))
    endpoint.delay = 0.001  # many posts in flight in each worker
    deliveries = [Delivery(f"conn-{c}=", frames(f"conn-{c}=", 6)) for c in range(300)]
    outcome = api.deliver(deliveries)
    assert (outcome.delivered, outcome.failed, outcome.gone, outcome.owed) == (1800, 0, [], [])
    assert endpoint.bad_signatures == 0  # workers sign with the credentials they inherited
    for delivery in deliveries:
        assert endpoint.accepted[delivery.connection_id] == delivery.frames  # in order, once each
    assert api.posts == 1800 and api.sharded_rounds == 1
    workers = transport(api).pids
    assert len(set(workers)) == shards and os.getpid() not in workers
    # Warm: the next round goes to the same workers.
    again = [Delivery(d.connection_id, frames(d.connection_id, 8)[6:]) for d in deliveries]
    assert api.deliver(again).delivered == 600
    assert transport(api).pids == workers and transport(api).started == shards
    for delivery in deliveries:
        assert endpoint.accepted[delivery.connection_id] == frames(delivery.connection_id, 8)


def test_gone_and_owed_from_a_shard_come_back_and_owed_frames_are_kept(endpoint, made) -> None:
    made.append(api := sharded(endpoint, 2))
    endpoint.script["gone="] = [200, 410]
    endpoint.script["owes="] = [200] + [500] * 5
    others = [Delivery(f"o{c}=", frames(f"o{c}=", 2)) for c in range(40)]
    outcome = api.deliver([Delivery("gone=", frames("gone=", 3)), Delivery("owes=", frames("owes=", 4)), *others])
    assert api.sharded_rounds == 1
    assert outcome.gone == ["gone="] and endpoint.requests["gone="] == 2
    assert outcome.owed == [Delivery("owes=", frames("owes=", 4)[1:])]
    assert outcome.delivered == 1 + 1 + 80 and endpoint.requests["owes="] == 6
    assert api.owing == {"owes=": frames("owes=", 4)[1:]}
    # The owing connection is held back before the next split: nothing is posted to it, and its
    # new frames queue behind the owed ones, in order.
    later = [Delivery("owes=", ["five", "six"]), *[Delivery(d.connection_id, ["x"]) for d in others]]
    held = api.deliver(later)
    assert endpoint.requests["owes="] == 6 and held.delivered == 40
    assert api.take_owing() == {"owes=": frames("owes=", 4)[1:] + ["five", "six"]}


def test_small_rounds_never_start_a_worker_and_a_wide_one_does(endpoint, made) -> None:
    made.append(api := sharded(endpoint, 2, threshold=100))
    small = [Delivery(f"s{c}=", frames(f"s{c}=", 3)) for c in range(33)]  # 99 posts
    assert api.deliver(small).delivered == 99
    assert (transport(api).started, transport(api).rounds, transport(api).pids) == (0, 0, [])
    assert api.sharded_rounds == 0 and api.posts == 99
    wide = [Delivery(f"w{c}=", frames(f"w{c}=", 4)) for c in range(25)]  # 100 posts: the control
    assert api.deliver(wide).delivered == 100
    assert transport(api).started == 2 and api.sharded_rounds == 1 and api.posts == 199
    assert all(endpoint.accepted[d.connection_id] == d.frames for d in small + wide)


def _deliver_in_thread(api: ShardedApi, deliveries: list[Delivery]) -> tuple[threading.Thread, list]:
    result: list = []

    def run() -> None:
        try:
            result.append(api.deliver(deliveries))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_worker_killed_mid_round_fails_the_round_and_is_replaced(endpoint, made) -> None:
    made.append(api := sharded(endpoint, 2))
    deliveries = [Delivery(f"k{c}=", frames(f"k{c}=", 5)) for c in range(100)]
    assert {shard_of(d.connection_id, 2) for d in deliveries} == {0, 1}
    api.deliver(deliveries[:20])  # workers started and warm
    first, second = transport(api).pids
    endpoint.closed = True
    thread, result = _deliver_in_thread(api, deliveries)
    # Both workers are posting (each has a request held), and worker 0 is killed mid-round.
    assert wait_until(lambda: {shard_of(cid, 2) for cid in endpoint.held} == {0, 1})
    os.kill(first, signal.SIGKILL)
    endpoint.release()
    thread.join(timeout=60)
    (failure,) = result
    assert isinstance(failure, ShardFailed) and f"pid {first}" in str(failure)
    assert not alive(first)
    # The next round is posted in full, by a new worker 0 and the same worker 1.
    outcome = api.deliver(deliveries)
    assert outcome.delivered == 500 and outcome.owed == [] and api.owing == {}
    assert transport(api).pids[1] == second and first not in transport(api).pids
    assert transport(api).started == 3
    for delivery in deliveries:
        assert endpoint.accepted[delivery.connection_id][-5:] == delivery.frames


def test_a_worker_dead_between_rounds_is_replaced_before_the_next(endpoint, made) -> None:
    made.append(api := sharded(endpoint, 2))
    deliveries = [Delivery(f"d{c}=", frames(f"d{c}=", 2)) for c in range(50)]
    api.deliver(deliveries)
    dead, well = transport(api).pids
    os.kill(dead, signal.SIGKILL)
    # Exited for good: a killed process shows as a zombie while its threads are still being
    # torn down, before it can be reaped; only once reapable is it dead *between* rounds.
    assert wait_until(lambda: os.waitid(os.P_PID, dead, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None)
    assert api.deliver(deliveries).delivered == 100  # nothing was in flight: nothing fails
    assert transport(api).pids[1] == well and dead not in transport(api).pids
    assert transport(api).started == 3


def test_a_worker_that_stops_answering_is_killed_at_the_deadline(endpoint, made) -> None:
    made.append(api := sharded(endpoint, 2))
    deliveries = [Delivery(f"t{c}=", frames(f"t{c}=", 2)) for c in range(50)]
    api.deliver(deliveries)  # started and warm
    stuck, well = transport(api).pids
    api.timeout = 2.0
    os.kill(stuck, signal.SIGSTOP)
    try:
        with pytest.raises(ShardFailed, match="no answer before the deadline"):
            api.deliver(deliveries)
        assert not alive(stuck)
    finally:
        if alive(stuck):
            os.kill(stuck, signal.SIGKILL)
    api.timeout = 60  # the replacement starts within the round
    assert api.deliver(deliveries).delivered == 100
    assert transport(api).pids[1] == well and stuck not in transport(api).pids


def test_a_worker_that_cannot_start_fails_the_round_with_its_reason(endpoint, made, monkeypatch) -> None:
    monkeypatch.delenv("RIPPLE_CONNECTIONS_ENDPOINT")
    made.append(api := sharded(endpoint, 2))
    with pytest.raises(ShardFailed, match="closed its pipe"):
        api.deliver([Delivery(f"n{c}=", ["x"]) for c in range(20)])
    assert endpoint.accepted == {} and transport(api).pids == []
    monkeypatch.setenv("RIPPLE_CONNECTIONS_ENDPOINT", endpoint.url)
    assert api.deliver([Delivery(f"n{c}=", ["x"]) for c in range(20)]).delivered == 20  # the control


PARENT = textwrap.dedent("""
    import sys
    from ripple.gateway import Delivery
    from ripple.shards.process import ProcessTransport
    transport = ProcessTransport(2)
    transport.post([[Delivery("a=", ["1"])], [Delivery("b=", ["2"])]], timeout=60)
    print(*transport.pids, flush=True)
    sys.stdin.read()  # until the test closes it (or kills this process)
""")


@pytest.mark.parametrize("ending", ["killed", "exits"])
def test_workers_end_when_their_parent_does(endpoint, ending) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=env, text=True)
    assert parent.stdout is not None and parent.stdin is not None
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and endpoint.accepted == {"a=": ["1"], "b=": ["2"]}
        assert all(alive(pid) for pid in workers)  # the control: they live while their parent does
        if ending == "killed":
            parent.kill()  # SIGKILL: no chance to stop its workers
        else:
            parent.stdin.close()  # the parent exits normally without stopping them
        parent.wait(timeout=30)
        assert wait_until(lambda: not any(alive(pid) for pid in workers))
    finally:
        parent.kill()
        parent.wait()
