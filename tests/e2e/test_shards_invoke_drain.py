"""The drain with RIPPLE_SHARD_TRANSPORT=lambda, end to end: changes committed to Postgres reach
every subscriber through poster function invocations (real Invoke calls to the local stack's
Lambda API, the real poster posting through the local gateway), in order; a poster that fails
mid-batch has the batch redelivered, and nothing is lost."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from ripple.config import settings
from ripple.local.stack import POSTER_FUNCTION
from ripple.outbox.drain import fanout
from tests.e2e.environment import swap
from tests.e2e.tables import published
from tests.e2e.wire import Wire

pytestmark = pytest.mark.e2e

BINDING = [{"event": "INSERT", "schema": "public", "table": "sharded_notes"}]
ROWS = 12


@pytest.fixture
def notes(db):
    published(db, "sharded_notes", "n int not null")
    return db


def _sharding_through(function: str) -> bool:
    transport = getattr(fanout().api, "transport", None)
    return getattr(transport, "function_name", None) == function


@contextlib.contextmanager
def fanout_posting_through(function: str) -> Iterator[None]:
    """The fanout's container with wide rounds (2 posts or more) split across 3 invocations of
    `function`; its previous configuration after."""
    env = {"RIPPLE_SHARD_TRANSPORT": "lambda", "RIPPLE_POSTER_SHARDS": "3", "RIPPLE_SHARD_THRESHOLD": "2",
           "RIPPLE_POSTER_FUNCTION": function}
    saved = swap(dict(env))
    try:
        # A wake already building the fanout from the old settings may store it after a clear.
        deadline = time.monotonic() + 10
        while not _sharding_through(function):
            assert time.monotonic() < deadline, "the fanout never took the new settings"
            settings.cache_clear()
            fanout.cache_clear()
            time.sleep(0.1)
        yield
    finally:
        swap(saved)
        while _sharding_through(function):
            settings.cache_clear()
            fanout.cache_clear()
            time.sleep(0.1)


def received(wire: Wire, count: int, timeout: float = 30.0) -> list[int]:
    """The `n` of each change `wire` receives, until `count` distinct ones have arrived."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(set(got)) < count and time.monotonic() < deadline:
        frame = wire.recv(timeout=max(0.1, deadline - time.monotonic()))
        if frame["event"] == "postgres_changes":
            got.append(frame["payload"]["data"]["record"]["n"])
    return got


@contextlib.contextmanager
def subscribed(stack, db, count: int, prefix: str) -> Iterator[list[Wire]]:
    """`count` sockets, each joined to its own channel with the table's binding; closed once
    every change has been acked and what was posted has been read."""
    wires = [Wire(stack.ws_url, stack.key("anon")) for _ in range(count)]
    try:
        for index, wire in enumerate(wires):
            wire.join(f"realtime:{prefix}-{index}", BINDING)
        yield wires
    finally:
        until_drained(db)
        for wire in wires:
            # Redelivered duplicates left unread would hold up the close handshake.
            with contextlib.suppress(TimeoutError):
                while True:
                    wire.recv(timeout=0.3)
            wire.close()


def until_drained(db, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while db.execute("select count(*) from realtime.outbox_pending").fetchone()[0]:
        assert time.monotonic() < deadline, "the outbox was never drained"
        time.sleep(0.1)


def insert(db, rows: range) -> None:
    with db.transaction():
        for n in rows:
            db.execute("insert into sharded_notes (n) values (%s)", (n,))


def test_changes_reach_every_subscriber_in_order_through_poster_invocations(stack, notes):
    with fanout_posting_through(POSTER_FUNCTION), subscribed(stack, notes, 6, "sharded") as wires:
        before = stack.functions.invocations[POSTER_FUNCTION]
        insert(notes, range(ROWS))
        for wire in wires:
            assert received(wire, ROWS) == list(range(ROWS))
        assert stack.functions.invocations[POSTER_FUNCTION] > before


def test_a_poster_failing_mid_batch_has_the_batch_redelivered_and_nothing_is_lost(stack, notes):
    real = stack.functions.functions[POSTER_FUNCTION]
    failures = []
    lock = threading.Lock()

    def crashes_once(event, context):
        with lock:
            first = not failures
            failures.append(len(event["deliveries"]))
        if first:
            raise MemoryError("Runtime exited with error: signal: killed")
        return real(event, context)

    # The poster function itself, its first invocation killed (as Lambda ends one out of memory).
    stack.functions.functions[POSTER_FUNCTION] = crashes_once
    try:
        with fanout_posting_through(POSTER_FUNCTION), subscribed(stack, notes, 6, "sharded-crash") as wires:
            insert(notes, range(ROWS))
            for wire in wires:
                got = received(wire, ROWS)
                # Redelivery may repeat what the other shards had posted; every change arrives,
                # and each connection's first copies come in commit order.
                assert sorted(set(got)) == list(range(ROWS))
                assert list(dict.fromkeys(got)) == list(range(ROWS)), got
            assert len(failures) > 1  # the crash, then the redelivered batch's shards
    finally:
        stack.functions.functions[POSTER_FUNCTION] = real
