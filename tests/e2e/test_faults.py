"""Delivery under faults: posts that fail with throttling or server errors never lose a change,
and a connection that stays unreachable is closed rather than silently skipped."""
from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed

from ripple.outbox.drain import fanout
from ripple.store import store
from tests.e2e.test_delivery import wait_until
from tests.e2e.wire import Wire


@pytest.fixture
def faults_table(db):
    db.execute("create table if not exists public.faults (id bigint generated always as identity "
               "primary key, n int not null)")
    db.execute("grant select on public.faults to anon")
    db.execute("""do $$ begin if not exists (select 1 from pg_publication_tables where tablename = 'faults')
                  then alter publication supabase_realtime add table public.faults; end if; end $$""")
    return db


class FailingPosts:
    """The fanout's `@connections` client, failing the next `count` posts to one connection with
    `status` (then posting normally): the fault API Gateway gives under a burst."""

    def __init__(self, client, connection_id: str, count: int, status: int, code: str):
        self._client, self.target, self.left, self.status, self.code = client, connection_id, count, status, code
        self.failed = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._client, name)

    def post_to_connection(self, ConnectionId, Data):  # noqa: N803
        with self._lock:
            fail = ConnectionId == self.target and self.left != 0
            if fail:
                self.left -= 1
                self.failed += 1
        if fail:
            raise ClientError({"Error": {"Code": self.code, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": self.status}}, "PostToConnection")
        return self._client.post_to_connection(ConnectionId=ConnectionId, Data=Data)


def _connection_id(wire: Wire, topic: str) -> str:
    (member,) = [m for m in store().members(topic)]
    return member.connection_id


def _received(wire: Wire, count: int, timeout: float = 20.0) -> list[int]:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        frame = wire.recv(timeout=max(0.1, deadline - time.monotonic()))
        if frame["event"] == "postgres_changes":
            got.append(frame["payload"]["data"]["record"]["n"])
    return got


@pytest.mark.parametrize("status,code", [(500, "InternalServerErrorException"), (429, "LimitExceededException")])
def test_posts_failing_past_their_retries_are_owed_and_arrive_in_order(stack, faults_table, status, code):
    subject, control = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    drainer = fanout()
    real = drainer.api.client
    binding = [{"event": "INSERT", "schema": "public", "table": "faults"}]
    try:
        subject.join(f"realtime:faults-{status}", binding)
        target = _connection_id(subject, f"realtime:faults-{status}")
        control.join(f"realtime:faults-control-{status}", binding)
        # Seven failures: the first frame's five tries are spent (its batch owes every frame of
        # this subscriber), and the next drain's retry fails twice more before it gets through.
        drainer.api.client = injected = FailingPosts(real, target, 7, status, code)
        with faults_table.transaction():
            for n in range(50):
                faults_table.execute("insert into faults (n) values (%s)", (n,))
        assert _received(control, 50) == list(range(50))
        assert _received(subject, 50) == list(range(50))
        assert injected.failed == 7
    finally:
        drainer.api.client = real
        subject.close()
        control.close()


def test_a_connection_unreachable_past_the_deadline_is_closed(stack, faults_table):
    subject, control = Wire(stack.ws_url, stack.key("anon")), Wire(stack.ws_url, stack.key("anon"))
    drainer = fanout()
    real, deadline = drainer.api.client, drainer.owed_deadline_seconds
    binding = [{"event": "INSERT", "schema": "public", "table": "faults"}]
    try:
        subject.join("realtime:faults-gone", binding)
        target = _connection_id(subject, "realtime:faults-gone")
        control.join("realtime:faults-gone-control", binding)
        drainer.api.client = FailingPosts(real, target, -1, 429, "LimitExceededException")
        drainer.owed_deadline_seconds = 1.0
        faults_table.execute("insert into faults (n) values (1000)")
        assert _received(control, 1) == [1000]
        assert wait_until(lambda: store().get_connection(target) is None, timeout=20)
        with pytest.raises(ConnectionClosed):  # the server closed the socket
            while True:
                subject.recv(timeout=5)
        # Nothing more is owed to it: a later change reaches the control alone, promptly.
        faults_table.execute("insert into faults (n) values (1001)")
        assert _received(control, 1) == [1001]
    finally:
        drainer.api.client, drainer.owed_deadline_seconds = real, deadline
        subject.close()
        control.close()
