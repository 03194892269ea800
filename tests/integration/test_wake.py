"""The commit-time wake-up: one per transaction, aws_lambda.invoke when present, never fatal."""
from __future__ import annotations

import psycopg
import pytest

from ripple.local.postgres import migrate
from ripple.local.stack import ROOT

STAND_IN = """
create schema aws_commons;
create schema aws_lambda;
create table public.invocations (arn text, payload json, kind text);
create function aws_commons.create_lambda_function_arn(arn text, region text) returns text
  language sql as $$ select arn || '@' || region $$;
create function aws_lambda.invoke(fn text, payload json, kind text) returns void
  language plpgsql as $$
  begin
    if fn like 'broken%' then raise exception 'lambda unreachable'; end if;
    insert into public.invocations values (fn, payload, kind);
  end $$;
create table public.items (id int primary key, note text);
alter publication supabase_realtime add table public.items;
"""


@pytest.fixture
def wake_db(stack):
    """A database of its own, so stand-in AWS functions never touch the other tests."""
    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute("drop database if exists wake_probe")
        admin.execute("create database wake_probe")
    url = stack.db_url.rsplit("/", 1)[0] + "/wake_probe"
    migrate(url, ROOT / "sql")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STAND_IN)
        yield conn


def test_one_event_invoke_per_transaction_with_the_writers_xid(wake_db):
    wake_db.execute("insert into realtime.settings values ('fanout_function_arn', 'arn:fanout'), "
                    "('aws_region', 'eu-west-1')")
    with wake_db.transaction():
        xid = wake_db.execute("select pg_current_xact_id()::text").fetchone()[0]
        wake_db.execute("insert into items values (1, 'a'), (2, 'b')")
        wake_db.execute("update items set note = 'c'")
    rows = wake_db.execute("select arn, payload::text, kind from invocations").fetchall()
    assert rows == [("arn:fanout@eu-west-1", f'{{"xid" : "{xid}"}}', "Event")]


def test_without_a_configured_function_only_pg_notify_runs(wake_db):
    wake_db.execute("insert into items values (3, 'x')")
    assert wake_db.execute("select count(*) from invocations").fetchone()[0] == 0
    assert wake_db.execute("select count(*) from realtime.outbox").fetchone()[0] == 1


def test_an_unreachable_lambda_never_fails_the_commit(wake_db):
    wake_db.execute("insert into realtime.settings values ('fanout_function_arn', 'broken'), "
                    "('aws_region', 'eu-west-1')")
    wake_db.execute("insert into items values (4, 'kept')")
    assert wake_db.execute("select note from items where id = 4").fetchone()[0] == "kept"
    assert wake_db.execute("select count(*) from realtime.outbox").fetchone()[0] == 1


def test_notification_rows_wake_the_delivery_function_not_the_fanout(wake_db):
    wake_db.execute("insert into realtime.settings values ('fanout_function_arn', 'arn:fanout'), "
                    "('notify_function_arn', 'arn:notify'), ('aws_region', 'eu-west-1')")
    with wake_db.transaction():
        wake_db.execute("insert into realtime.outbox (kind, payload) values ('notification', '{}'), "
                        "('notification', '{}')")
    with wake_db.transaction():
        wake_db.execute("insert into items values (5, 'both')")
        wake_db.execute("insert into realtime.outbox (kind, payload) values ('notification', '{}')")
    rows = wake_db.execute("select arn from invocations order by arn").fetchall()
    assert rows == [("arn:fanout@eu-west-1",), ("arn:notify@eu-west-1",), ("arn:notify@eu-west-1",)]


def test_the_consumer_waits_for_the_writers_commit_one_statement_when_it_is_done(stack):
    import threading

    from ripple.db import Database, await_commit

    db = Database(stack.db_url)
    with psycopg.connect(stack.db_url) as writer:
        xid = writer.execute("select pg_current_xact_id()::text").fetchone()[0]
        threading.Timer(0.05, writer.commit).start()
        await_commit(db, xid)
        assert db.statement("select pg_xact_status(%s::xid8) as s", (xid,))[0]["s"] == "committed"
    trips = db.round_trips
    await_commit(db, xid)
    assert db.round_trips == trips + 1
