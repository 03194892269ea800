"""PostgreSQL access: one connection per Lambda container, reopened when it breaks."""
from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import dict_row

from ripple import codec
from ripple.config import settings
from ripple.log import logger
from ripple.observability import subsegment

T = TypeVar("T")
TUPLES_OK = ExecStatus.TUPLES_OK


def conninfo(refresh: bool = False) -> str:
    """The connection string: RIPPLE_DB_URL, or the RDS-shaped secret at RIPPLE_DB_SECRET_ARN
    (cached for `secret_max_age_seconds`; `refresh` reads it again now)."""
    config = settings()
    if config.db_url:
        return config.db_url
    if config.db_secret_arn:
        from ripple.aws import secret as read_secret

        secret = codec.loads(read_secret(config.db_secret_arn, max_age=config.secret_max_age_seconds,
                                         refresh=refresh))
        return make_conninfo(host=config.db_host or secret["host"], port=str(secret.get("port", 5432)),
                             user=secret["username"], password=secret["password"],
                             dbname=secret.get("dbname", "postgres"), sslmode=config.db_sslmode,
                             application_name="ripple")
    raise RuntimeError("no database configured: set RIPPLE_DB_URL or RIPPLE_DB_SECRET_ARN")


@dataclass
class Database:
    """A lazily opened autocommit connection; `round_trips` counts statements, for the benchmark.

    One connection per thread: a Lambda container has one, the local gateway runs handlers on many.
    Each new connection takes the connection string from `source` (the secret, re-read once it
    is `secret_max_age_seconds` old); a login that fails reads the secret again once, so a
    rotated password reaches a warm container on its next connection.
    """

    url: str
    round_trips: int = 0
    source: Callable[[bool], str] | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def from_settings(cls) -> Database:
        return cls(conninfo(), source=conninfo)

    def connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and _dropped(conn):
            conn.close()
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = self._connect()
        return conn

    def _connect(self) -> psycopg.Connection[Any]:
        if self.source is not None:
            self.url = self.source(False)
        try:
            return self._open()
        except psycopg.OperationalError:
            if self.source is None:
                raise
            fresh = self.source(True)
            if fresh == self.url:
                raise
            logger.info("database login failed; connecting with the secret read again")
            self.url = fresh
            return self._open()

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, row_factory=dict_row)
        if not settings().db_prepare:
            conn.prepare_threshold = None
        return conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A transaction on the shared connection; a broken connection is reopened next time."""
        conn = self.connection()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            _flag_lost(conn, exc)
            raise

    @contextmanager
    def riding(self) -> Iterator[psycopg.Connection]:
        """A transaction whose BEGIN rides with its first statement and whose COMMIT rides with
        its last (`begin_with`, `commit_with`): two round trips fewer than `transaction`, for
        the drain, which runs one for every wake-up. A block that raises, or leaves the
        transaction open, is rolled back; a broken connection is reopened next time."""
        conn = self.connection()
        try:
            yield conn
        except psycopg.OperationalError as exc:
            _flag_lost(conn, exc)
            raise
        except BaseException:
            _roll_back(conn)
            raise
        if conn.info.transaction_status != TransactionStatus.IDLE:
            _roll_back(conn)
            raise RuntimeError("a riding transaction ended without commit_with")

    def begin_with(self, conn: psycopg.Connection, sql: str) -> list:
        """BEGIN and `sql` in one round trip (the simple query protocol carries both, so `sql`
        takes no parameters: only integers may be formatted into it); the rows of `sql`."""
        return self._both(conn, "begin; " + sql, last=True)

    def commit_with(self, conn: psycopg.Connection, sql: str) -> None:
        """`sql`, then COMMIT, in one round trip (no parameters, as in `begin_with`). If `sql`
        fails, nothing is committed and the error is raised (`riding` rolls back)."""
        self._both(conn, sql + "; commit", last=False)

    def _both(self, conn: psycopg.Connection, sql: str, last: bool) -> list:
        self.round_trips += 1
        with subsegment("postgres"):
            cur = conn.execute(sql, prepare=False)
            if last:
                cur.nextset()
            return _rows(cur)

    def unit(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` in one transaction; if the connection turns out dead (a failover, a
        restart, an idle timeout), run it once more on a fresh one. Only for work that is safe
        to repeat: it rolled back, so nothing of the first try remains."""
        try:
            with self.transaction() as conn:
                return work(conn)
        except psycopg.OperationalError as exc:
            if not _dead(exc):
                raise
            logger.warning("database connection lost; retrying on a new one", extra={"error": str(exc)[:200]})
        with self.transaction() as conn:
            return work(conn)

    def statement(self, sql: str, params: tuple | dict | None = None) -> list:
        """One read-only statement on its own, outside any transaction (the connection is in
        autocommit): one round trip. Run once more on a fresh connection if this one is dead."""
        conn = self.connection()
        try:
            return self.execute(conn, sql, params)
        except psycopg.OperationalError as exc:
            if not (conn.closed or conn.broken):
                raise
            conn.close()
            logger.warning("database connection lost; retrying on a new one", extra={"error": str(exc)[:200]})
        return self.execute(self.connection(), sql, params)

    def query(self, sql: str, params: tuple | dict | None = None) -> list:
        """One statement as its own unit of work (see `unit`)."""
        return self.unit(lambda conn: self.execute(conn, sql, params))

    def execute(self, conn: psycopg.Connection, sql: str, params: tuple | dict | None = None) -> list:
        """Run one statement and return its rows, counting the round trip."""
        self.round_trips += 1
        with subsegment("postgres"):
            return _rows(conn.execute(sql, params))


def _rows(cur: psycopg.Cursor) -> list:
    """The rows of the cursor's current result; none for a command. Told by the result's
    status, not `cur.description`, which builds a Column per column only to be tested for truth
    (the row factory has already made its own)."""
    result = cur.pgresult
    return cur.fetchall() if result is not None and result.status == TUPLES_OK and result.nfields else []


def _flag_lost(conn: psycopg.Connection, exc: psycopg.OperationalError) -> None:
    """Tell a lost connection apart from a failing statement (this connection is gone, a new
    one may work), and close it so the next use opens another."""
    exc.connection_lost = conn.closed or conn.broken  # type: ignore[attr-defined]
    conn.close()


def _roll_back(conn: psycopg.Connection) -> None:
    """End whatever transaction `conn` has open; a connection that cannot is closed."""
    if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        conn.execute("rollback")
    except psycopg.Error:
        conn.close()


def _dropped(conn: psycopg.Connection) -> bool:
    """Whether the server ended this idle connection (a restart, a failover, an admin's
    pg_terminate_backend). An idle connection that LISTENs to nothing is never sent anything
    but that goodbye, so a socket with data waiting is one to replace: one poll, no round trip.
    """
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _dead(exc: psycopg.OperationalError) -> bool:
    """Whether the error means the connection is gone, not that the statement failed."""
    return bool(getattr(exc, "connection_lost", False))


@lru_cache(maxsize=1)
def database() -> Database:
    """The container-wide database."""
    return Database.from_settings()


def await_commit(db: Database, xid: str, timeout: float = 5.0) -> None:
    """Wait (bounded) until transaction `xid` is no longer in progress.

    A wake-up sent by aws_lambda.invoke runs in the writer's commit path and can arrive before
    the commit is visible; waiting on the writer's xid closes that window. Usually the first
    look finds it committed: one statement, outside a transaction (no BEGIN and COMMIT round
    trips); while it is still in progress, looks again after 1, 2, 4... ms (at most 10).
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while db.statement("select pg_xact_status(%s::xid8) as s", (xid,))[0]["s"] == "in progress":
        if time.monotonic() >= deadline:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
