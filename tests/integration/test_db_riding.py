"""Database.riding: a transaction whose BEGIN and COMMIT travel with its first and last
statement, as the drain runs one for every wake-up."""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.pq import Trace, TransactionStatus

from ripple.db import Database

TABLE = "public.riding_probe"


@pytest.fixture
def probe(stack) -> Iterator[psycopg.Connection]:
    """An empty table, and another connection to look at it from outside the transaction."""
    with psycopg.connect(stack.db_url, autocommit=True) as other:
        other.execute(f"create table if not exists {TABLE} (n int)")
        other.execute(f"truncate {TABLE}")
        yield other


def stored(other: psycopg.Connection) -> list[int]:
    return [n for (n,) in other.execute(f"select n from {TABLE} order by n").fetchall()]


@contextmanager
def messages(conn: psycopg.Connection) -> Iterator[list[str]]:
    """The protocol messages the client sends on `conn` inside the block (libpq's trace): one
    round trip is one Query (simple protocol) or one Sync (extended)."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield sent
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            sent.extend(line.split("\t")[2].strip() for line in trace if line.startswith("F\t"))


def test_begin_and_commit_ride_with_the_first_and_last_statement(stack, probe):
    db = Database(stack.db_url)
    conn = db.connection()
    trips = db.round_trips
    with messages(conn) as sent:
        with db.riding() as ridden:
            assert db.begin_with(ridden, "select 7 as n") == [{"n": 7}]
            assert ridden.info.transaction_status == TransactionStatus.INTRANS
            db.execute(ridden, f"insert into {TABLE} values (%s)", (1,))
            assert stored(probe) == []  # not committed yet
            db.commit_with(ridden, f"insert into {TABLE} values (2)")
    assert stored(probe) == [1, 2]
    assert conn.info.transaction_status == TransactionStatus.IDLE
    # Three statements, three round trips: no BEGIN or COMMIT of their own.
    assert db.round_trips == trips + 3
    assert sent.count("Query") + sent.count("Sync") == 3, sent


def test_a_failing_last_statement_commits_nothing_and_the_connection_goes_on(stack, probe):
    db = Database(stack.db_url)
    with pytest.raises(psycopg.errors.DivisionByZero):
        with db.riding() as conn:
            db.begin_with(conn, "select 1")
            db.execute(conn, f"insert into {TABLE} values (%s)", (3,))
            db.commit_with(conn, "select 1 / 0")
    assert stored(probe) == []
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert db.statement("select 1 as one") == [{"one": 1}]
    assert db.connection() is conn  # rolled back and kept, not reopened


def test_a_block_that_raises_or_never_commits_is_rolled_back(stack, probe):
    db = Database(stack.db_url)
    with pytest.raises(ValueError):
        with db.riding() as conn:
            db.begin_with(conn, "select 1")
            db.execute(conn, f"insert into {TABLE} values (%s)", (4,))
            raise ValueError("planning failed")
    assert conn.info.transaction_status == TransactionStatus.IDLE
    with pytest.raises(RuntimeError, match="without commit_with"):
        with db.riding() as conn:
            db.begin_with(conn, "select 1")
            db.execute(conn, f"insert into {TABLE} values (%s)", (5,))
    assert conn.info.transaction_status == TransactionStatus.IDLE
    assert stored(probe) == []
    # The control: the same statements committed are stored.
    with db.riding() as conn:
        db.begin_with(conn, "select 1")
        db.commit_with(conn, f"insert into {TABLE} values (6)")
    assert stored(probe) == [6]


def test_a_connection_lost_inside_is_flagged_and_replaced(stack, probe):
    db = Database(stack.db_url)
    with pytest.raises(psycopg.OperationalError) as raised:
        with db.riding() as conn:
            db.begin_with(conn, "select 1")
            probe.execute("select pg_terminate_backend(%s)", (conn.info.backend_pid,))
            db.execute(conn, "select 1")
    assert raised.value.connection_lost  # type: ignore[attr-defined]
    assert conn.closed
    assert db.statement("select 2 as two") == [{"two": 2}]
