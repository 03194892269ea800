"""The outbox as the change log (sql/013_outbox_log.sql): an ack settles ids instead of moving
rows, a row committed late below delivered ids is still delivered, gaps close only once no
writer can fill them, notifications take no positions, and expiry drops outbox and ack days
only when nothing a replay can reach is in them.

Each test drains by hand on a connection holding the drain lock, as the fanout does, so the
stack's own drain waits and every step is the test's."""
from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from ripple.outbox.drain import _ack_statement

DRAIN_LOCK = "select pg_advisory_xact_lock(hashtext('realtime.drain'))"
# A notification wake-up as realtime's notifications write it (for a notification that is gone:
# the delivery function acks it and sends nothing).
WAKE_UP = ("insert into realtime.outbox (kind, payload) "
           "values ('notification', jsonb_build_object('notification_id', gen_random_uuid()))")


@pytest.fixture
def table(db) -> str:
    name = f"kept_{uuid.uuid4().hex[:8]}"
    db.execute(f"create table public.{name} (id bigint primary key, body text)")
    db.execute(f"alter publication supabase_realtime add table public.{name}")
    return name


@contextmanager
def drain_lock(stack) -> Iterator[psycopg.Connection]:
    """A connection inside a transaction holding the drain lock, committed on leaving: what is
    written meanwhile waits for the test's own drain (the stack's fanout and sweep wait too)."""
    with psycopg.connect(stack.db_url) as drainer:
        drainer.execute(DRAIN_LOCK)
        yield drainer
        drainer.commit()


def drain(drainer: psycopg.Connection) -> list[tuple[int, str, int | None]]:
    """pending_positioned, then the ack of all of it as the fanout sends it; returns (id, kind,
    position) of each row."""
    rows = drainer.execute("select id, kind, position from realtime.pending_positioned(500)").fetchall()
    drainer.execute(_ack_statement([{"id": i, "kind": kind} for i, kind, _ in rows]))
    return rows


def step(stack, db, *writes: str) -> list[tuple[int, str, int | None]]:
    """One drain transaction: `writes` committed by the app while it holds the lock, then drained."""
    with drain_lock(stack) as drainer:
        for sql in writes:
            db.execute(sql)
        return drain(drainer)


def ours(rows, db, table) -> list[int]:
    """The ids among `rows` that are changes of `table`."""
    mine = {i for (i,) in db.execute("select id from realtime.outbox where table_name = %s", (table,))}
    return [r[0] for r in rows if r[0] in mine]


def settled(db) -> list:
    return list(db.execute("select settled from realtime.log_state").fetchone()[0])


def test_an_ack_settles_ids_and_records_the_batch_copying_no_row(stack, db, table):
    step(stack, db)
    with drain_lock(stack) as drainer:
        db.execute(f"insert into public.{table} select g, 'x' from generate_series(1, 20) g")
        rows = drainer.execute("select id, kind, position from realtime.pending_positioned(500)").fetchall()
        assert len(rows) == 20 and all(kind == "change" for _, kind, _ in rows)
        ids = [i for i, _, _ in rows]
        acks_before = drainer.execute("select count(*) from realtime.log_acks").fetchone()[0]
        logged_before = drainer.execute("select count(*) from realtime.log").fetchone()[0]
        drainer.execute(_ack_statement([{"id": i, "kind": "change"} for i in ids]))
        # One row for the batch: its ids (one run), from the first position pending gave.
        first, taken, acked = drainer.execute(
            "select first_position, taken, ids::text from realtime.log_acks "
            "order by first_position desc limit 1").fetchone()
        assert (first, taken, acked) == (rows[0][2], 20, f"{{[{ids[0]},{ids[-1] + 1})}}")
        assert ids == list(range(ids[0], ids[0] + 20))
        assert drainer.execute("select count(*) from realtime.log_acks").fetchone()[0] == acks_before + 1
        # The change rows are where the capture trigger wrote them; nothing was copied.
        assert drainer.execute("select count(*) from realtime.log").fetchone()[0] == logged_before
        assert drainer.execute("select count(*) from realtime.outbox where id = any(%s)", (ids,)).fetchone()[0] == 20
        assert drainer.execute("select count(*) from realtime.pending(500)").fetchone()[0] == 0
    entries = db.execute("select position, record ->> 'id' from realtime.log_entries "
                         "where table_name = %s order by position", (table,)).fetchall()
    assert entries == [(rows[0][2] + n, str(n + 1)) for n in range(20)]


def test_a_row_committed_late_below_delivered_ids_is_delivered_and_then_its_gap_closes(stack, db, table):
    step(stack, db)
    slow = psycopg.connect(stack.db_url)
    try:
        slow.execute(f"insert into public.{table} values (1, 'written first, committed last')")
        # Drains while the slow writer is open: each takes what is committed, and the acks'
        # tidying never closes the gap the slow writer's id sits in.
        for n in range(2, 7):
            rows = step(stack, db, f"insert into public.{table} values ({n}, 'later')")
            assert len(ours(rows, db, table)) == 1
        assert len(settled(db)) >= 2
        with drain_lock(stack) as drainer:
            slow.commit()
            late = ours(drain(drainer), db, table)
        assert len(late) == 1
        got = db.execute("select record ->> 'body' from realtime.outbox where id = %s", (late[0],)).fetchone()[0]
        assert got == "written first, committed last"
    finally:
        slow.close()
    # With no writer left that could fill a gap, a few more acks (a sample of the sequence,
    # then its xid horizon, then the check) settle everything below: one range.
    for n in range(7, 10):
        step(stack, db, f"insert into public.{table} values ({n}, 'tidy')")
    assert len(settled(db)) == 1
    assert db.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0
    positions = [p for (p,) in db.execute("select position from realtime.log_entries "
                                          "where table_name = %s order by position", (table,))]
    assert len(positions) == 9 == len(set(positions))


def outbox_reads(db) -> int:
    """Rows read from the outbox's partitions so far, by scans or through indexes."""
    return db.execute("select coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) "
                      "from pg_stat_user_tables where schemaname = 'realtime' "
                      "and relname like 'outbox%'").fetchone()[0]


def reads_of(stack, sql: str) -> int:
    """How many outbox rows `sql` reads, run on a session of its own."""
    with psycopg.connect(stack.db_url, autocommit=True) as own:
        own.execute("select pg_stat_force_next_flush()")
        before = outbox_reads(own)
        own.execute(sql).fetchall()
        own.execute("select pg_stat_force_next_flush()")
        return outbox_reads(own) - before


def test_a_gap_below_kept_rows_is_read_as_its_own_range_not_through_the_rows_above(stack, db, table):
    step(stack, db)
    slow = psycopg.connect(stack.db_url)
    try:
        slow.execute(f"insert into public.{table} values (0, 'in flight')")
        gap = slow.execute("select id from realtime.outbox where table_name = %s", (table,)).fetchone()[0]
        for n in range(4):
            rows = step(stack, db, f"insert into public.{table} select g, 'kept' "
                                   f"from generate_series({1 + 500 * n}, {500 * (n + 1)}) g")
            assert len(ours(rows, db, table)) == 500
        # The kept rows are settled above the gap, which stays open while its writer is.
        assert not any(gap in r for r in settled(db)) and any(gap + 2000 in r for r in settled(db))
        # Control: the counter sees a scan that walks the 2000 kept rows above the gap...
        assert reads_of(stack, f"select id from realtime.outbox where id >= {gap} order by id") >= 2000
        # ...and the drain's read of the gap (nothing committed in it yet) reads almost none.
        with drain_lock(stack) as drainer:
            assert ours(drainer.execute("select id from realtime.pending(500)").fetchall(), db, table) == []
        assert reads_of(stack, "select id from realtime.pending(500)") < 100
        assert reads_of(stack, "select id from realtime.outbox_pending") < 100
        with drain_lock(stack) as drainer:
            slow.commit()
            assert ours(drain(drainer), db, table) == [gap]
    finally:
        slow.close()


def test_rolled_back_ids_and_notification_rows_are_closed_over(stack, db, table):
    step(stack, db)
    with drain_lock(stack) as drainer:
        with psycopg.connect(stack.db_url) as doomed:
            doomed.execute(f"insert into public.{table} select g, 'never' from generate_series(1, 5) g")
            doomed.rollback()
        db.execute(WAKE_UP)
        db.execute(f"insert into public.{table} values (6, 'kept')")
        taken = drain(drainer)
        assert len(ours(taken, db, table)) == 1 and all(kind != "notification" for _, kind, _ in taken)
    # Control: the holes are there until the tidying may close them...
    assert len(settled(db)) >= 2
    for n in range(7, 10):
        step(stack, db, f"insert into public.{table} values ({n}, 'tidy')")
    # ...and then they are gone (the notification row is its own consumer's, never the drain's).
    assert len(settled(db)) == 1


def test_notification_acks_take_no_positions(stack, db):
    with drain_lock(stack):  # no drain moves the positions meanwhile
        db.execute(WAKE_UP)
        (nid,) = db.execute("select max(id) from realtime.outbox where kind = 'notification'").fetchone()
        before = db.execute("select last_position, settled from realtime.log_state").fetchone()
        db.execute("select realtime.ack_notifications(%s)", ([nid],))
        assert db.execute("select count(*) from realtime.outbox where id = %s", (nid,)).fetchone()[0] == 0
        assert db.execute("select last_position, settled from realtime.log_state").fetchone() == before


def days(db) -> set[str]:
    return {name for (name,) in db.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent in ('realtime.outbox'::regclass, 'realtime.log_acks'::regclass)")}


OLD_CHANGE = ("insert into realtime.outbox (schema_name, table_name, op, record, captured_at) "
              "values ('public', '{table}', 'INSERT', '{{\"id\": {n}}}', '{at}')")


def test_expiry_drops_outbox_and_ack_days_only_when_no_replay_can_reach_them(stack, db, table):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    day = f"{old:%Y%m%d}"
    db.execute("select realtime.log_maintain(%s)", (old,))
    assert {f"outbox_{day}", f"log_acks_{day}"} <= days(db)
    # A change captured and delivered ten days ago.
    step(stack, db)
    with drain_lock(stack) as drainer:
        db.execute(OLD_CHANGE.format(table=table, n=1, at=old.isoformat()))
        (first,) = drain(drainer)
        drainer.execute("update realtime.log_acks set acked_at = %s where ids @> %s::bigint", (old, first[0]))
    horizon_before = db.execute("select horizon_position from realtime.log_state").fetchone()[0]
    with drain_lock(stack) as drainer:
        # One captured then and still undelivered (a fanout that was down)...
        db.execute(OLD_CHANGE.format(table=table, n=2, at=old.isoformat()))
        db.execute("select realtime.log_maintain()")
        left = days(db)
        # ...keeps its day; the ack day went and the horizon moved past its positions.
        assert f"log_acks_{day}" not in left and f"outbox_{day}" in left
        horizon = db.execute("select horizon_position from realtime.log_state").fetchone()[0]
        assert horizon >= max(horizon_before, first[2])
        (second,) = drain(drainer)
    # Delivered now (its ack today's): the day stays while that ack can be replayed from...
    db.execute("select realtime.log_maintain()")
    assert f"outbox_{day}" in days(db)
    # ...and goes once every ack that may point into it has expired too.
    db.execute("update realtime.log_acks set acked_at = %s where lo_id <= %s", (old, second[0]))
    db.execute("select realtime.log_maintain()")
    assert f"outbox_{day}" not in days(db)
    assert db.execute("select count(*) from realtime.outbox where id = any(%s)",
                      ([first[0], second[0]],)).fetchone()[0] == 0


def test_an_outbox_from_before_the_log_in_place_is_moved_into_day_partitions_with_its_ids(stack):
    """The upgrade: an unpartitioned outbox with undelivered rows (ack deleted delivered ones),
    and change rows an earlier version copied into realtime.log."""
    from ripple.local.postgres import apply_file
    from ripple.local.stack import ROOT

    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute("drop database if exists upgrade_probe")
        admin.execute("create database upgrade_probe")
    url = stack.db_url.rsplit("/", 1)[0] + "/upgrade_probe"
    files = sorted((ROOT / "sql").glob("*.sql"))
    with psycopg.connect(url, autocommit=True) as conn:
        for path in files:
            if path.name < "013":
                apply_file(conn, path)
        assert conn.execute("select relkind from pg_class where oid = 'realtime.outbox'::regclass").fetchone()[0] == "r"
        conn.execute("create table public.waiting (id bigint primary key)")
        conn.execute("alter publication supabase_realtime add table public.waiting")
        conn.execute("insert into public.waiting select generate_series(1, 3)")
        conn.execute("select realtime.send('{}'::jsonb, 'e', 'room', false)")
        before = conn.execute("select id, kind from realtime.outbox order by id").fetchall()
        conn.execute("update realtime.log_state set last_position = 7")
        conn.execute("insert into realtime.log (position, kind, schema_name, table_name, op, record, captured_at) "
                     "values (7, 'change', 'public', 'waiting', 'INSERT', '{}', now())")
        for _ in range(2):  # the upgrade, then a re-run that changes nothing
            for path in files:
                if path.name >= "013":
                    apply_file(conn, path)
            assert conn.execute("select relkind from pg_class where oid = 'realtime.outbox'::regclass").fetchone()[0] == "p"
            # The undelivered rows are still there, with their ids, and pending hands them out.
            assert conn.execute("select id, kind from realtime.outbox order by id").fetchall() == before
            assert [i for (i,) in conn.execute("select id from realtime.pending(500)")] == [i for i, _ in before]
        # The old change rows are gone behind the horizon: a replay from before is told so.
        assert conn.execute("select count(*) from realtime.log where kind = 'change'").fetchone()[0] == 0
        assert conn.execute("select horizon_position from realtime.log_state").fetchone()[0] == 7
        # New rows take ids after the old ones and still wake the fanout at commit.
        conn.execute("listen realtime_outbox")
        conn.execute("insert into public.waiting values (4)")
        (newest,) = conn.execute("select max(id) from realtime.outbox").fetchone()
        assert newest > before[-1][0]
        assert next(conn.notifies(timeout=5, stop_after=1)).channel == "realtime_outbox"
    with psycopg.connect(stack.db_url, autocommit=True) as admin:
        admin.execute("drop database upgrade_probe (force)")


def test_the_one_argument_ack_of_earlier_functions_acks_batches_and_notification_rows(stack, db, table):
    step(stack, db)
    with drain_lock(stack) as drainer:
        db.execute(f"insert into public.{table} values (1, 'a')")
        db.execute(WAKE_UP)
        db.execute(f"insert into public.{table} values (2, 'b')")
        rows = drainer.execute("select id, position from realtime.pending_positioned(500)").fetchall()
        (note,) = drainer.execute("select max(id) from realtime.outbox where kind = 'notification'").fetchone()
        drainer.execute("select realtime.ack(%s)", ([i for i, _ in rows],))
        drainer.execute("select realtime.ack(%s)", ([note],))  # as the delivery function did
        last = drainer.execute("select last_position from realtime.log_state").fetchone()[0]
    assert db.execute("select count(*) from realtime.outbox where id = %s", (note,)).fetchone()[0] == 0
    assert last == rows[-1][1]  # the notification took no position
    entries = db.execute("select position from realtime.log_entries where table_name = %s order by position",
                         (table,)).fetchall()
    assert [p for (p,) in entries] == [p for _, p in rows]


# What the drain's read must not be: the lock and the read as statements of one stable function,
# which share the snapshot taken when it was called, before the wait for the lock.
STALE_READ = """
create function pg_temp.stale_pending() returns table (id bigint) language sql stable as $$
  select pg_advisory_xact_lock(hashtext('realtime.drain'));
  select id from realtime.pending_positioned(500);
$$"""


def test_a_drain_that_waited_for_the_lock_reads_after_the_ack_it_waited_for(stack, db, table):
    """drain_pending takes the lock, then reads: a drain that queued behind another reads the
    outbox as that one's ack left it. The control, a read on the snapshot from before the wait,
    takes the acked batch again."""
    step(stack, db)

    def queued(sql: str, setup: str | None, out: dict, name: str) -> None:
        with psycopg.connect(stack.db_url) as conn:
            if setup:
                conn.execute(setup)
            out[f"{name}_pid"] = conn.info.backend_pid
            out[name] = [i for (i, *_) in conn.execute(sql).fetchall()]
            conn.rollback()

    out: dict = {}
    with drain_lock(stack) as first:
        db.execute(f"insert into public.{table} select g, 'x' from generate_series(1, 3) g")
        taken = drain(first)
        assert len(ours(taken, db, table)) == 3
        threads = [threading.Thread(target=queued, args=("select * from realtime.drain_pending(500)", None, out, "drain")),
                   threading.Thread(target=queued, args=("select * from pg_temp.stale_pending()", STALE_READ, out, "stale"))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = [out.get("drain_pid"), out.get("stale_pid")]
            if None not in pids and db.execute(
                    "select count(*) from pg_locks where locktype = 'advisory' and not granted and pid = any(%s)",
                    (pids,)).fetchone()[0] == 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the two reads never queued for the drain lock")
    for thread in threads:
        thread.join(timeout=10)
    mine = {i for i, _, _ in taken}
    assert mine & set(out["stale"]) == set(ours(taken, db, table))  # the control reads them again
    assert not mine & set(out["drain"])
