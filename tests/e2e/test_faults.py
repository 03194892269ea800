"""Delivery under faults: posts that fail with throttling or server errors never lose a change,
and a connection that stays unreachable is closed rather than silently skipped."""
from __future__ import annotations

import json
import time

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from ripple.outbox.drain import fanout
from ripple.store import store
from tests.e2e.tables import published
from tests.e2e.test_delivery import wait_until
from tests.e2e.wire import Wire


@pytest.fixture
def faults_table(db):
    published(db, "faults", "n int not null")
    return db


class FailingPosts:
    """The fanout's poster, failing the next `count` posts to one connection with `status`
    (then posting normally): the fault API Gateway gives under a burst."""

    def __init__(self, poster, connection_id: str, count: int, status: int, code: str):
        self._poster, self.target, self.left, self.status, self.code = poster, connection_id, count, status, code
        self.failed = 0

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]:
        # One event loop runs every post: no lock needed between the check and the count.
        if connection_id == self.target and self.left != 0:
            self.left -= 1
            self.failed += 1
            return self.status, self.code
        return await self._poster.post(connection_id, data)

    async def delete(self, connection_id: str) -> tuple[int, str]:
        return await self._poster.delete(connection_id)


def _connection_id(topic: str) -> str:
    """The connection of a topic's only member."""
    (member,) = store().members(topic)
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
        target = _connection_id(f"realtime:faults-{status}")
        control.join(f"realtime:faults-control-{status}", binding)
        # Seven failures: the first frame's five tries are spent (its batch owes every frame of
        # this subscriber), and the next drain's retry fails twice more before it gets through.
        drainer.api.client = injected = FailingPosts(drainer.api.poster, target, 7, status, code)
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
        target = _connection_id("realtime:faults-gone")
        control.join("realtime:faults-gone-control", binding)
        drainer.api.client = FailingPosts(drainer.api.poster, target, -1, 429, "LimitExceededException")
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


def test_a_row_too_large_for_one_message_arrives_cut_and_the_rest_of_its_batch_arrives(stack, db):
    published(db, "wide", "n int not null, body text")
    wires = [Wire(stack.ws_url, stack.key("anon")) for _ in range(2)]
    try:
        for wire in wires:
            wire.join("realtime:wide", [{"event": "INSERT", "schema": "public", "table": "wide"}])
        with db.transaction():
            db.execute("insert into wide (n, body) values (0, %s)", ("x" * 200_000,))
            for n in range(1, 51):
                db.execute("insert into wide (n, body) values (%s, 'small')", (n,))
        for wire in wires:
            frames = [wire.recv() for _ in range(51)]
            data = [f["payload"]["data"] for f in frames]
            assert [d["record"]["n"] for d in data] == list(range(51))
            assert data[0]["errors"] == ["Error 413: Payload Too Large"] and "body" not in data[0]["record"]
            assert all(d["errors"] is None and d["record"]["body"] == "small" for d in data[1:])
    finally:
        for wire in wires:
            wire.close()


@pytest.mark.parametrize("frame", [
    '{"topic":"realtime:\\ud83d","event":"phx_join","payload":{"config":{}},"ref":"1"}',
    '{"topic":"realtime:x","event":"phx_join","payload":' + "[" * 1000 + "]" * 1000 + ',"ref":"1"}',
    '{"topic":"realtime:x","event":"phx_join","payload":{"config":{"postgres_changes":[{"event":["*"]}]}},"ref":"1"}',
    '{"topic":"realtime:' + "x" * 1500 + '","event":"phx_join","payload":{"config":{}},"ref":"1"}',
    '{"topic":"realtime:a\\u0000b","event":"phx_join","payload":{"config":{"private":true}},"ref":"1"}',
    '{"topic":"realtime:x","event":"phx_join","payload":{"config":{"postgres_changes":'
    '[{"event":"*","schema":"public","table":"a\\u0000b"}]}},"ref":"1"}',
])
def test_frames_that_used_to_raise_get_protocol_answers_over_the_wire(stack, frame):
    wire = Wire(stack.ws_url, stack.key("anon"))
    try:
        wire.ws.send(frame)
        answers = [wire.recv()]
        if answers[0]["event"] == "phx_reply" and answers[0]["payload"]["status"] == "ok":
            answers.append(wire.recv())  # a refused binding: its system error follows the reply
        assert "Internal server error" not in json.dumps(answers)
        last = answers[-1]
        assert last["event"] == "phx_error" or last["payload"]["status"] == "error", answers
        # The connection still works: a heartbeat is answered.
        ref = wire.send("phoenix", "heartbeat", {})
        assert wire.recv() == {"topic": "phoenix", "event": "phx_reply", "ref": ref,
                               "payload": {"status": "ok", "response": {}}}
    finally:
        wire.close()


def _drop_other_connections(db) -> int:
    """What a failover does to every warm worker: its database connection is gone."""
    return len(db.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                          "where datname = current_database() and pid <> pg_backend_pid() "
                          "and backend_type = 'client backend'").fetchall())


def test_lost_database_connections_are_replaced_without_an_error(stack, db, faults_table):
    binding = [{"event": "INSERT", "schema": "public", "table": "faults"}]
    wires = [Wire(stack.ws_url, stack.key("anon")) for _ in range(8)]
    try:
        for n, wire in enumerate(wires):  # every worker has a warm connection
            wire.join(f"realtime:warm-{n}", binding)
        faults_table.execute("insert into faults (n) values (1)")
        for wire in wires:
            assert _received(wire, 1) == [1]
        # Acked first: a drain connection lost before its ack redelivers the batch (at least
        # once), and that duplicate would land where the joins below read their replies.
        assert wait_until(lambda: db.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0)
        with psycopg.connect(stack.db_url, autocommit=True) as admin:
            assert _drop_other_connections(admin) >= 1
        for n, wire in enumerate(wires):
            reply, system = wire.join(f"realtime:after-{n}", binding)
            assert reply["payload"]["status"] == "ok", reply
            assert system["payload"]["message"] == "Subscribed to PostgreSQL", system
        with psycopg.connect(stack.db_url, autocommit=True) as admin:
            _drop_other_connections(admin)
        with psycopg.connect(stack.db_url, autocommit=True) as writer:
            writer.execute("insert into faults (n) values (2)")
        for wire in wires:  # two channels each now: the change arrives on both
            assert _received(wire, 2) == [2, 2]
    finally:
        for wire in wires:
            wire.close()
