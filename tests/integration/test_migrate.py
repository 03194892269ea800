"""Migrations beside running functions: a file Postgres picks as a deadlock victim runs again."""
from __future__ import annotations

import threading

import psycopg
import pytest

from ripple.local.postgres import migrate

TABLES = "create table if not exists first (id int); create table if not exists second (id int);"
# Alters `first`, then `second`: the order a drain holding `second` and reading `first` crosses.
MIGRATION = ("alter table first add column if not exists note text;\n"
             "select pg_sleep(0.3);\n"
             "alter table second add column if not exists note text;\n")


@pytest.fixture
def contended(stack, tmp_path):
    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute("drop database if exists migrate_probe")
        admin.execute("create database migrate_probe")
    url = stack.db_url.rsplit("/", 1)[0] + "/migrate_probe"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLES)
    (tmp_path / "001_alter.sql").write_text(MIGRATION)
    return url, tmp_path


def deadlock_with_a_reader(url: str, sql_dir, run_migration) -> tuple[list, list]:
    """A reader that holds `second` and then reads `first` while the migration runs; its own
    deadlock check waits 10 s, so the migration (checking after 1 s) is the victim."""
    outcome: list = []
    reader_errors: list = []
    with psycopg.connect(url) as reader:
        reader.execute("set deadlock_timeout = '10s'")
        reader.execute("lock table second in access share mode")

        def migrating() -> None:
            try:
                outcome.append(run_migration(url, sql_dir))
            except psycopg.Error as error:
                outcome.append(error)

        thread = threading.Thread(target=migrating)
        thread.start()
        reader.execute("select pg_sleep(0.6)")  # the migration now holds `first`, waits on `second`
        try:
            reader.execute("select count(*) from first").fetchone()
            reader.commit()
        except psycopg.Error as error:
            reader_errors.append(error)
        thread.join(30)
    return outcome, reader_errors


def test_a_migration_picked_as_deadlock_victim_is_run_again_and_completes(contended):
    url, sql_dir = contended
    outcome, reader_errors = deadlock_with_a_reader(url, sql_dir, migrate)
    assert outcome == [["001_alter.sql"]] and reader_errors == []
    with psycopg.connect(url) as conn:
        columns = conn.execute("select table_name from information_schema.columns "
                               "where column_name = 'note' order by 1").fetchall()
    assert columns == [("first",), ("second",)]


def test_control_run_once_the_same_interleaving_is_a_deadlock(contended):
    url, sql_dir = contended

    def once(url, sql_dir):
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute((sql_dir / "001_alter.sql").read_text())

    outcome, reader_errors = deadlock_with_a_reader(url, sql_dir, once)
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.DeadlockDetected)
    assert reader_errors == []
