"""Retention benchmark: what keeping the message log costs the writer and the drain, and what it
stores.

Against the local stack's Postgres (embedded, migrated as on every start) and nothing else, so
the numbers are Ripple's own statements. For each batch size, rounds with `log_retention_hours`
0 (off) and 72 (on) alternate, `--rounds` of each, so drift on a shared machine hits both alike.
A round writes `--batches` batches through the capture trigger (one INSERT of `batch` rows of
`public.bench_log`, ~100-byte text, in its own transaction: the writer's path), then drains
them as the fanout does, one transaction per batch: drain lock, `realtime.pending_positioned`,
`realtime.ack`, commit. Each drain transaction also reads the same rows with `realtime.pending`
(the read without positions), the two reads in alternating order. With the log on, every
delivered row stays in the outbox: the reads show whether what is kept costs the drain. Per statement and setting it
prints p50/p99 per batch over every round, µs per change and on/off of the p50s, and the WAL
the ack writes; then the log's size: bytes per change (table and its indexes), MB per million
changes, and rows per day at `--per-second` changes per second; and how long a rejoin's change
replay takes against that log (from a position, and from a time).

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/retention.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/retention.py --batch-sizes 100,500 --batches 40 --rounds 5
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psycopg
from harness import configure, counts, free_port, percentile, print_header

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (("off", "0"), ("on", "72"))
# Every batch committed in order; then with one writer's transaction open below the batches for
# the whole round, as a slow writer leaves a gap the drain must read past without slowing.
SCENARIOS = ("writers committing in order", "a writer in flight below the batches")
# What each line measures, in the order printed.
STATEMENTS = (
    ("writer", "writer INSERT (capture trigger), commit"),
    ("pending_positioned", "pending_positioned (the drain's read)"),
    ("pending", "pending (the read without positions)"),
    ("ack", "ack"),
    ("commit", "drain commit"),
)
TABLE = ("create table if not exists public.bench_log (id bigint primary key, body text); "
         "alter publication supabase_realtime add table public.bench_log")
WRITE = ("insert into public.bench_log select g, repeat('x', 100) "
         "from generate_series(%s::bigint, %s::bigint) g")


def elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def write(conn: psycopg.Connection, batch: int, batches: int, first: int, into: dict) -> None:
    """`batches` writer transactions of `batch` rows each, timed with their commit."""
    for n in range(batches):
        started = time.perf_counter()
        conn.execute(WRITE, (first + n * batch, first + (n + 1) * batch - 1))
        into["writer"].append(elapsed_ms(started))


def drain(conn: psycopg.Connection, batch: int, flip: bool, into: dict) -> int:
    """One drain transaction as the fanout runs it, timed into `into` unless it found nothing;
    returns how many rows it acked."""
    from ripple.outbox.drain import _ack_statement
    reads = [("pending", "select id from realtime.pending(%s)"),
             ("pending_positioned", "select id, kind from realtime.pending_positioned(%s)")]
    ids: list[int] = []
    batch_rows: list[dict] = []
    times: dict[str, float] = {}
    conn.execute("begin")
    conn.execute("select pg_advisory_xact_lock(hashtext('realtime.drain'))")
    for name, sql in reversed(reads) if flip else reads:
        started = time.perf_counter()
        rows = conn.execute(sql, (batch,)).fetchall()
        times[name] = elapsed_ms(started)
        if name == "pending_positioned":
            ids = [r[0] for r in rows]
            batch_rows = [{"id": r[0], "kind": r[1]} for r in rows]
    lsn = conn.execute("select pg_current_wal_insert_lsn()").fetchone()[0]
    started = time.perf_counter()
    conn.execute(_ack_statement(batch_rows))
    times["ack"] = elapsed_ms(started)
    times["ack_wal"] = float(conn.execute("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)",
                                          (lsn,)).fetchone()[0])
    started = time.perf_counter()
    conn.execute("commit")
    times["commit"] = elapsed_ms(started)
    if ids:
        for name, ms in times.items():
            into[name].append(ms)
    return len(ids)


def round_(conn: psycopg.Connection, batch: int, batches: int, setting: tuple[str, str], first: int,
           into: dict, in_flight: psycopg.Connection | None = None) -> None:
    """One round; with `in_flight`, a writer's transaction on it holds one row uncommitted
    below all the round's batches (a gap the drain reads past every time) until they are
    drained, then commits it and drains it untimed."""
    _, retention = setting
    conn.execute("update realtime.settings set value = %s where key = 'log_retention_hours'", (retention,))
    conn.execute("truncate public.bench_log")
    if in_flight is not None:
        in_flight.execute("insert into public.bench_log values (%s, 'in flight')", (-1 - first,))
    write(conn, batch, batches, first, into)
    conn.execute("analyze realtime.outbox")
    flip = False
    while drain(conn, batch, flip, into):
        flip = not flip
    if in_flight is not None:
        in_flight.commit()
        drain(conn, batch, flip, defaultdict(list))


def cells(ms: list[float], batch: int) -> str:
    ms = sorted(ms)
    return f"{percentile(ms, 50):7.2f} {percentile(ms, 99):7.2f} {1000 * percentile(ms, 50) / batch:6.1f}"


def report(batch: int, scenario: str, samples: dict[str, dict[str, list[float]]]) -> None:
    count = len(samples["off"]["ack"])
    print(f"\nbatch of {batch} changes, {scenario}, {count} batches per setting; "
          "ms per batch (µs per change)")
    print(f"{'':42} | {'log off: p50     p99  µs/ch':>27} | {'log on: p50     p99  µs/ch':>27} | on/off p50")
    for key, label in STATEMENTS:
        off, on = samples["off"][key], samples["on"][key]
        ratio = percentile(sorted(on), 50) / percentile(sorted(off), 50)
        print(f"{label:42} | {cells(off, batch):>27} | {cells(on, batch):>27} | {ratio:6.2f}")
    wal = {label: percentile(sorted(samples[label]["ack_wal"]), 50) for label, _ in SETTINGS}
    print(f"{'WAL the ack writes, p50 KB per batch':42} | {wal['off'] / 1000:11.1f} {'':15} | "
          f"{wal['on'] / 1000:11.1f} {'':15} | {wal['on'] / wal['off']:6.2f}")


def replays(conn: psycopg.Connection, calls: int = 20) -> None:
    """The two change replays a rejoin asks for, against the log as the rounds left it: the 100
    oldest of the last 1000 changes, asked from a position and from a time. First as written
    (seconds ago, not yet analyzed), then analyzed, as autovacuum leaves it."""
    last = conn.execute("select last_position from realtime.log_state").fetchone()[0]
    since = conn.execute("select extract(epoch from captured_at) * 1000 from realtime.log_entries "
                         "where position = %s", (last - 999,)).fetchone()[0]
    tables = '[{"schema": "public", "table": "bench_log"}]'
    asks = (("from a position", (tables, last - 1000, None, last, 100)),
            ("from a time", (tables, None, since, last, 100)))
    for state in ("as written", "analyzed"):
        if state == "analyzed":
            conn.execute("analyze realtime.outbox")
            conn.execute("analyze realtime.log_acks")
        for label, args in asks:
            ms = []
            for _ in range(calls):
                started = time.perf_counter()
                conn.execute("select * from realtime.replay_changes(%s::jsonb, %s, %s, %s, %s)", args).fetchall()
                ms.append(elapsed_ms(started))
            ms.sort()
            print(f"replay_changes {label}, 100 of the last 1000, log {state}: "
                  f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms over {calls} calls")


def log_size(conn: psycopg.Connection, per_second: float) -> None:
    """What the kept changes take: their outbox rows (where the writer put them) and the acks
    that number them, with every index of both, compacted first (VACUUM FULL) so the rows the
    log-off rounds deleted do not count."""
    conn.execute("vacuum full realtime.outbox")
    logged = conn.execute("select coalesce(sum(taken), 0) from realtime.log_acks").fetchone()[0]
    size = int(conn.execute(
        "select sum(pg_total_relation_size(i.inhrelid)) from pg_inherits i "
        "where i.inhparent in ('realtime.outbox'::regclass, 'realtime.log_acks'::regclass)").fetchone()[0])
    per_change = size / max(1, logged)
    print(f"\nlog: {logged} changes kept, {size / 1e6:.1f} MB with indexes (outbox rows and acks): "
          f"{per_change:.0f} B per change, {per_change:.0f} MB per million changes "
          f"(row image of ~130 B JSON)")
    per_day = per_second * 86400
    print(f"at {per_second:g} changes/s: {per_day:,.0f} rows/day, "
          f"{per_day * 3 * per_change / 1e9:.1f} GB kept over 72 h")


def main() -> int:
    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=counts, default=counts("50,500"))
    parser.add_argument("--batches", type=int, default=40, help="batches written and drained per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting, alternating")
    parser.add_argument("--per-second", type=float, default=100.0,
                        help="change rate for the rows/day estimate")
    args = parser.parse_args()
    from ripple.local.postgres import LocalPostgres, migrate

    print_header("retention: the writer, the drain's pending and ack, log on (72 h) vs off (0)")
    with tempfile.TemporaryDirectory(prefix="ripple-bench-") as state:
        pg = LocalPostgres(Path(state) / "postgres", free_port())
        pg.start()
        try:
            migrate(pg.url, ROOT / "sql")
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute(TABLE)
                first = 0
                for batch, scenario in itertools.product(args.batch_sizes, SCENARIOS):
                    samples: dict[str, dict[str, list[float]]] = {
                        label: defaultdict(list) for label, _ in SETTINGS}
                    for _ in range(args.rounds):
                        for setting in SETTINGS:
                            with (psycopg.connect(pg.url) if scenario == SCENARIOS[1]
                                  else contextlib.nullcontext()) as in_flight:
                                round_(conn, batch, args.batches, setting, first,
                                       samples[setting[0]], in_flight)
                            first += batch * args.batches
                    report(batch, scenario, samples)
                log_size(conn, args.per_second)
                replays(conn)
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
