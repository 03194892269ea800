"""The message log (sql/012_message_log.sql, sql/013_outbox_log.sql) under the real fanout: delivered rows are kept with
positions in drain order, retention '0' keeps nothing, and expiry drops whole day partitions and
moves the horizon a replay is checked against."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import psycopg
import pytest

from tests.e2e.test_authorization import drain, user_token
from tests.e2e.test_delivery import wait_until
from tests.e2e.test_replay import POLICY, send_many
from tests.e2e.wire import Wire


def drained(db) -> bool:
    return wait_until(lambda: db.execute("select count(*) from realtime.outbox_pending").fetchone()[0] == 0)


@pytest.fixture
def retention(db):
    yield db
    db.execute("update realtime.settings set value = '72' where key = 'log_retention_hours'")


def test_positions_follow_the_drain_order_not_the_write_order(stack, db):
    topic = f"order-{uuid.uuid4()}"
    slow = psycopg.connect(stack.db_url)
    try:
        # Written first (the lower outbox id) but committed, and so drained, second.
        slow.execute("select realtime.send('{\"n\": \"first written\"}'::jsonb, 'e', %s, false)", (topic,))
        db.execute("select realtime.send('{\"n\": \"first committed\"}'::jsonb, 'e', %s, false)", (topic,))
        assert drained(db)
        slow.commit()
        assert drained(db)
    finally:
        slow.close()
    rows = db.execute("select payload -> 'payload' ->> 'n', position from realtime.log "
                      "where topic = %s order by position", (topic,)).fetchall()
    assert [n for n, _ in rows] == ["first committed", "first written"]
    last = db.execute("select last_position from realtime.log_state").fetchone()[0]
    assert rows[-1][1] <= last
    everything = [p for (p,) in db.execute("select position from realtime.log_entries order by position")]
    assert len(everything) == len(set(everything))


def test_changes_and_broadcasts_are_logged_with_their_row_images(stack, db):
    db.execute("create table if not exists public.logged (id bigint primary key, body text)")
    db.execute("alter publication supabase_realtime add table public.logged")
    key = int(time.time() * 1000) % 1_000_000_000
    db.execute("insert into public.logged values (%s, 'a')", (key,))
    db.execute("delete from public.logged where id = %s", (key,))
    assert drained(db)
    rows = db.execute("select op, record, old_record from realtime.log_entries where kind = 'change' "
                      "and table_name = 'logged' and coalesce(record, old_record) ->> 'id' = %s "
                      "order by position", (str(key),)).fetchall()
    assert rows == [("INSERT", {"id": key, "body": "a"}, None), ("DELETE", None, {"id": key, "body": "a"})]


def test_retention_zero_keeps_nothing_and_replay_is_refused(stack, retention):
    db = retention
    db.execute(POLICY)
    topic = f"replay-{uuid.uuid4()}"
    db.execute("update realtime.settings set value = '0' where key = 'log_retention_hours'")
    send_many(db, topic, 2)
    assert db.execute("select count(*) from realtime.log where topic = %s", (topic,)).fetchone()[0] == 0
    # What went unlogged is behind the horizon: a replay spanning it is told so.
    horizon, last = db.execute("select horizon_position, last_position from realtime.log_state").fetchone()
    assert horizon == last
    wire = Wire(stack.ws_url, user_token(1))
    try:
        reply, _ = wire.join(f"realtime:{topic}", [], private=True, broadcast={"replay": {"since": 0}})
        assert reply["payload"]["response"]["reason"].startswith("UnableToReplayMessages")
        # Control: with retention back on, what is sent from now on is kept.
        db.execute("update realtime.settings set value = '72' where key = 'log_retention_hours'")
        send_many(db, topic, 1)
        assert db.execute("select count(*) from realtime.log where topic = %s", (topic,)).fetchone()[0] == 1
    finally:
        wire.close()


def partitions(db) -> set[str]:
    return {name for (name,) in db.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = 'realtime.log'::regclass")}


def test_expiry_drops_whole_day_partitions_and_moves_the_horizon(stack, db):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    db.execute("select realtime.log_maintain(%s)", (old,))
    day = f"log_{old:%Y%m%d}"
    assert day in partitions(db)
    db.execute("insert into realtime.log (position, kind, topic, private, payload, captured_at, logged_at) "
               "values (0, 'broadcast', 'ancient', false, '{}', %s, %s)", (old, old))
    dropped = db.execute("select realtime.log_maintain()").fetchone()[0]
    assert dropped >= 3
    left = partitions(db)
    assert day not in left and f"log_{dt.datetime.now(dt.UTC):%Y%m%d}" in left
    assert db.execute("select count(*) from realtime.log where topic = 'ancient'").fetchone()[0] == 0
    horizon = db.execute("select horizon_at from realtime.log_state").fetchone()[0]
    assert horizon >= dt.datetime.combine((old + dt.timedelta(days=3)).date(), dt.time(), dt.UTC)


def test_a_replay_from_before_the_horizon_is_told_its_history_is_incomplete(stack, db):
    db.execute(POLICY)
    topic = f"replay-{uuid.uuid4()}"
    since = send_many(db, topic, 2)
    horizon = db.execute("select horizon_at from realtime.log_state").fetchone()[0]
    before = int(horizon.timestamp() * 1000) - 1
    wire = Wire(stack.ws_url, user_token(1))
    try:
        reply, _ = wire.join(f"realtime:{topic}", [], private=True, broadcast={"replay": {"since": before}})
        assert reply["payload"]["status"] == "ok"
        got = drain(wire)
        assert got[0]["event"] == "system" and got[0]["payload"]["code"] == "replay_expired"
        assert [f["payload"]["payload"]["n"] for f in got[1:]] == [0, 1]
        # Control: asking from inside the window gets the messages and no such notice.
        reply, _ = wire.join(f"realtime:{topic}", [], private=True, broadcast={"replay": {"since": since}})
        got = drain(wire)
        assert [f["event"] for f in got] == ["broadcast", "broadcast"]
    finally:
        wire.close()


def test_the_fanouts_sweep_runs_the_log_upkeep(stack, db):
    from ripple.outbox.drain import WakeEvent, fanout

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    db.execute("select realtime.log_maintain(%s)", (old,))
    assert f"log_{old:%Y%m%d}" in partitions(db)
    running = fanout()
    running._log_upkeep_due = 0.0  # as in a fresh container
    stats = running.run(WakeEvent(sweep=True), budget_seconds=5)
    assert stats.expired_partitions >= 3
    assert f"log_{old:%Y%m%d}" not in partitions(db)
    # Control: within the hour the next sweep leaves the log alone.
    db.execute("select realtime.log_maintain(%s)", (old,))
    assert running.run(WakeEvent(sweep=True), budget_seconds=5).expired_partitions == 0
    assert f"log_{old:%Y%m%d}" in partitions(db)
    db.execute("select realtime.log_maintain()")


def log_brins(db) -> dict[str, list[str] | None]:
    """Every BRIN index of the log and its partitions, with its storage options."""
    return {name: options for name, options in db.execute(
        "select c.relname, c.reloptions from pg_index x join pg_class c on c.oid = x.indexrelid "
        "join pg_am am on am.oid = c.relam where am.amname = 'brin' and (x.indrelid = 'realtime.log'::regclass or x.indrelid in "
        "(select inhrelid from pg_inherits where inhparent = 'realtime.log'::regclass))")}


def test_an_upgrade_keeps_the_logged_history_and_its_positions(stack, db):
    from ripple.local.postgres import apply_file, retry_contended
    from ripple.local.stack import ROOT

    db.execute(POLICY)
    # The log as the first release of the migration left it: a BRIN on position without
    # autosummarize and none on captured_at, with history in it.
    def downgrade() -> None:
        with db.transaction():
            db.execute("drop index if exists realtime.log_captured_at")
            db.execute("drop index realtime.log_position")
            db.execute("create index log_position on realtime.log using brin (position)")

    retry_contended(downgrade)
    assert log_brins(db)["log_position"] is None and "log_captured_at" not in log_brins(db)
    topic = f"replay-{uuid.uuid4()}"
    send_many(db, topic, 3)
    before = db.execute("select position, payload from realtime.log where topic = %s order by position",
                        (topic,)).fetchall()
    assert len(before) == 3

    for _ in range(2):  # the upgrade, then a re-run that changes nothing
        apply_file(db, ROOT / "sql" / "012_message_log.sql")
        brins = log_brins(db)
        assert "log_position" in brins and "log_captured_at" in brins
        assert all(options == ["autosummarize=on"] for options in brins.values()), brins
        assert db.execute("select position, payload from realtime.log where topic = %s order by position",
                          (topic,)).fetchall() == before

    # The history replays as it did, and what is sent next is numbered after it, none twice.
    replayed = db.execute("select position from realtime.replay_broadcast(%s, true, null, %s, 10)",
                          (topic, before[0][0] - 1)).fetchall()
    assert [p for (p,) in replayed] == [p for p, _ in before]
    send_many(db, topic, 2)
    after = [p for (p,) in db.execute("select position from realtime.log where topic = %s order by position",
                                      (topic,))]
    assert after[:3] == [p for p, _ in before] and len(after) == 5 and after[3] > before[-1][0]
    everything = [p for (p,) in db.execute("select position from realtime.log_entries order by position")]
    assert len(everything) == len(set(everything))


def test_ack_logs_each_row_at_the_position_pending_gave_it_owed_frames_first(stack, db):
    topic = f"numbered-{uuid.uuid4()}"
    with psycopg.connect(stack.db_url) as drainer:
        # Holding the drain lock, as the fanout does: the stack's own drain waits meanwhile.
        drainer.execute("select pg_advisory_xact_lock(hashtext('realtime.drain'))")
        for n in range(5):
            db.execute("select realtime.send(%s::jsonb, 'e', %s, false)", (f'{{"n": {n}}}', topic))
        drainer.execute("select realtime.owe(%s::jsonb)",
                        ('[{"connection_id": "gone-1", "frames": ["a", "b"], "since": 0}]',))
        rows = drainer.execute("select id, kind, payload, position from realtime.pending_positioned(500)").fetchall()
        ours = [(i, p) for i, kind, payload, p in rows if kind == "broadcast" and payload["topic"] == topic]
        assert rows[0][1] == "owed" and rows[0][3] is None and len(ours) == 5
        positioned = [p for _, kind, _, p in rows if kind != "owed"]
        assert positioned == list(range(positioned[0], positioned[0] + len(positioned)))
        # A batch cut short: the owed frames and the first rows up to our third are acked...
        cut = [i for i, *_ in rows].index(ours[2][0]) + 1
        drainer.execute("select realtime.ack(%s)", ([i for i, *_ in rows[:cut]],))
        assert drainer.execute("select count(*) from realtime.owed where connection_id = 'gone-1'").fetchone()[0] == 0
        # ...and the next read numbers what is left right after them.
        again = drainer.execute("select id, position from realtime.pending_positioned(500)").fetchall()
        assert [i for i, _ in again][:2] == [i for i, _ in ours[3:]]
        assert [p for _, p in again][:2] == [ours[2][1] + 1, ours[2][1] + 2]
        drainer.execute("select realtime.ack(%s)", ([i for i, _ in again],))
        drainer.commit()
    logged = db.execute("select position from realtime.log where topic = %s order by position", (topic,)).fetchall()
    assert [p for (p,) in logged] == [p for _, p in ours]
