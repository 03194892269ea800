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

    problems: list[str] = []
    cycles = [0] * CHURNERS

    def churner(k: int) -> None:
        sock = Socket(stack)
        left: dict[str, int] = {}  # topic -> the last id committed when its leave was answered
        with psycopg.connect(stack.db_url, autocommit=True) as conn:
            while not stop.is_set():
                topic = f"realtime:churn-{k}-{cycles[k]}"
                sock.join(topic)
                after = committed_max(conn)  # every later id must reach this channel
                sock.until(lambda: False, timeout=0.05 + 0.05 * (cycles[k] % 5))
                before = committed_max(conn)
                wanted = set(range(after + 1, before + 1))
                if not sock.until(lambda: wanted <= set(sock.changes.get(topic, ())), timeout=15):
                    problems.append(f"{topic} missed {sorted(wanted - set(sock.changes.get(topic, ())))}")
                sock.leave(topic)
                left[topic] = committed_max(conn)
                cycles[k] += 1
        sock.until(lambda: False, timeout=1.0)
        for topic, last in left.items():
            late = [i for i in sock.changes.get(topic, ()) if i > last]
            if late:
                problems.append(f"{topic} received {late} after its leave was answered")
            ids = sock.changes.get(topic, [])
            if len(ids) != len(set(ids)):
                problems.append(f"{topic} received duplicates")
        sock.wire.close()

    threads = [threading.Thread(target=write)] + [threading.Thread(target=churner, args=(k,))
                                                   for k in range(CHURNERS)]
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
        assert sum(cycles) >= 2 * CHURNERS, cycles  # the channels really did come and go
        assert problems == []
    finally:
        control.wire.close()
