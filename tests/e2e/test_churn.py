"""Warm bindings under churn: channels join and leave the same table continuously while changes
stream, and each one still receives every change committed after its join reply, and nothing of
a channel it has left once the leave is answered."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.e2e.wire import Wire

pytestmark = pytest.mark.timeout(120)

SECONDS = 6.0
CHURNERS = 4
BINDING = [{"event": "INSERT", "schema": "public", "table": "churn"}]


@pytest.fixture
def churn(db):
    db.execute("create table if not exists public.churn (id bigint generated always as identity "
               "primary key, note text)")
    db.execute("grant select on public.churn to anon")
    db.execute("""do $$ begin if not exists (select 1 from pg_publication_tables where tablename = 'churn')
                  then alter publication supabase_realtime add table public.churn; end if; end $$""")
    return db


class Socket:
    """One socket, its frames sorted by topic as they arrive."""

    def __init__(self, stack):
        self.wire = Wire(stack.ws_url, stack.key("anon"))
        self.changes: dict[str, list[int]] = {}
        self.replies: dict[str, dict] = {}

    def pump(self, timeout: float = 0.05) -> None:
        try:
            msg = self.wire.recv(timeout=timeout)
        except TimeoutError:
            return
        if msg["event"] == "postgres_changes":
            self.changes.setdefault(msg["topic"], []).append(int(msg["payload"]["data"]["record"]["id"]))
        elif msg["event"] == "phx_reply":
            self.replies[msg["ref"]] = msg["payload"]
        elif msg["event"] == "system":
            self.replies[f"system:{msg['topic']}"] = msg["payload"]

    def until(self, done, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.pump()
        return True

    def join(self, topic: str) -> None:
        ref = self.wire.send(topic, "phx_join", {"config": {"postgres_changes": BINDING}},
                             join_ref="j" + topic)
        assert self.until(lambda: f"system:{topic}" in self.replies), f"no join answer for {topic}"
        assert self.replies[ref]["status"] == "ok", self.replies[ref]

    def leave(self, topic: str) -> None:
        ref = self.wire.send(topic, "phx_leave", {}, join_ref="j" + topic)
        assert self.until(lambda: ref in self.replies), f"no leave reply for {topic}"


def committed_max(conn) -> int:
    return conn.execute("select coalesce(max(id), 0) from public.churn").fetchone()[0]


class Churner:
    """Joins a fresh channel, stays a moment, checks what arrived, leaves; again and again."""

    def __init__(self, stack, k: int):
        self.stack, self.k = stack, k
        self.sock = Socket(stack)
        self.cycles = 0
        self.left: dict[str, int] = {}  # topic -> the last id committed when its leave was answered
        self.problems: list[str] = []

    def received(self, topic: str) -> set[int]:
        return set(self.sock.changes.get(topic, ()))

    def cycle(self, conn) -> None:
        topic = f"realtime:churn-{self.k}-{self.cycles}"
        self.sock.join(topic)
        after = committed_max(conn)  # every later id must reach this channel
        self.sock.until(lambda: False, timeout=0.05 + 0.05 * (self.cycles % 5))
        wanted = set(range(after + 1, committed_max(conn) + 1))
        if not self.sock.until(lambda: wanted <= self.received(topic), timeout=15):
            self.problems.append(f"{topic} missed {sorted(wanted - self.received(topic))}")
        self.sock.leave(topic)
        self.left[topic] = committed_max(conn)
        self.cycles += 1

    def run(self, stop: threading.Event) -> None:
        with psycopg.connect(self.stack.db_url, autocommit=True) as conn:
            while not stop.is_set():
                self.cycle(conn)
        self.sock.until(lambda: False, timeout=1.0)
        for topic, last in self.left.items():
            ids = self.sock.changes.get(topic, [])
            if late := [i for i in ids if i > last]:
                self.problems.append(f"{topic} received {late} after its leave was answered")
            if len(ids) != len(set(ids)):
                self.problems.append(f"{topic} received duplicates")
        self.sock.wire.close()


def test_joins_and_leaves_under_streaming_changes_miss_nothing(stack, churn):
    control = Socket(stack)
    control.join("realtime:churn-control")
    start = committed_max(churn)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            while not stop.is_set():
                written.append(conn.execute("insert into public.churn (note) values ('x') returning id")
                               .fetchone()[0])
                time.sleep(0.01)

    churners = [Churner(stack, k) for k in range(CHURNERS)]
    threads = [threading.Thread(target=write)] + [threading.Thread(target=c.run, args=(stop,))
                                                   for c in churners]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    try:
        expected = [i for i in written if i > start]
        assert control.until(lambda: len(control.changes.get("realtime:churn-control", ())) >= len(expected))
        # The control that stayed joined received every change, once, in commit order.
        assert control.changes["realtime:churn-control"] == expected
        cycles = [c.cycles for c in churners]
        assert sum(cycles) >= 2 * CHURNERS, cycles  # the channels really did come and go
        assert [p for c in churners for p in c.problems] == []
    finally:
        control.wire.close()
