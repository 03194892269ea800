"""Retention benchmark: what keeping the message log costs the drain, and what it stores.

Against the local stack's Postgres (embedded, migrated as on every start) and nothing else, so
the numbers are the drain's own statements: for each batch size it fills the outbox with
`--batches` batches of captured changes (one row of `public.bench_log` each, ~100-byte text),
then runs the drain's statements per batch in one transaction — drain lock,
`realtime.pending_positioned`, `realtime.ack` — with `log_retention_hours` 72 (on) and 0 (off),
and reports per batch p50/p95 of pending and of ack, and per change. Then the log's size:
bytes per change (table and its indexes, from pg_total_relation_size), MB per million changes,
and rows per day at `--per-second` changes per second.

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/retention.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/retention.py --batch-sizes 100,500 --batches 40
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from harness import configure, counts, free_port, percentile, print_header

ROOT = Path(__file__).resolve().parents[1]


def fill(conn: psycopg.Connection, rows: int) -> None:
    """`rows` captured INSERTs in the outbox, written as the capture trigger writes them."""
    conn.execute("insert into realtime.outbox (schema_name, table_name, op, record) "
                 "select 'public', 'bench_log', 'INSERT', jsonb_build_object('id', g, 'body', repeat('x', 100)) "
                 "from generate_series(1, %s) g", (rows,))


def drain(conn: psycopg.Connection, batch: int) -> tuple[float, float, int]:
    """One drain transaction; returns (pending seconds, ack seconds, rows)."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('realtime.drain'))")
        started = time.perf_counter()
        rows = conn.execute("select id from realtime.pending_positioned(%s)", (batch,)).fetchall()
        read = time.perf_counter()
        conn.execute("select realtime.ack(%s)", ([r[0] for r in rows],))
        acked = time.perf_counter()
    return read - started, acked - read, len(rows)


def round_(conn: psycopg.Connection, batch: int, batches: int, retention: str) -> dict:
    conn.execute("update realtime.settings set value = %s where key = 'log_retention_hours'", (retention,))
    conn.execute("truncate realtime.outbox")
    fill(conn, batch * batches)
    conn.execute("analyze realtime.outbox")
    pending, ack = [], []
    while True:
        read, acked, got = drain(conn, batch)
        if not got:
            break
        pending.append(read * 1000)
        ack.append(acked * 1000)
    pending.sort()
    ack.sort()
    return {"pending": pending, "ack": ack}


def cell(ms: list[float], batch: int) -> str:
    return (f"{percentile(ms, 50):7.2f} {percentile(ms, 95):7.2f} "
            f"{1000 * statistics.median(ms) / batch:8.1f}")


def main() -> int:
    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=counts, default=counts("50,500"))
    parser.add_argument("--batches", type=int, default=40, help="batches drained per round")
    parser.add_argument("--per-second", type=float, default=100.0,
                        help="change rate for the rows/day estimate")
    args = parser.parse_args()
    from ripple.local.postgres import LocalPostgres, migrate

    print_header("retention: the drain's pending + ack with the message log on (72 h) and off (0)")
    with tempfile.TemporaryDirectory(prefix="ripple-bench-") as state:
        pg = LocalPostgres(Path(state) / "postgres", free_port())
        pg.start()
        try:
            migrate(pg.url, ROOT / "sql")
            with psycopg.connect(pg.url, autocommit=True) as conn:
                print(f"{'batch':>6} {'log':>4} | {'pending ms p50   p95   µs/row':>29} | "
                      f"{'ack ms p50   p95   µs/row':>25}")
                for batch in args.batch_sizes:
                    for retention, label in (("0", "off"), ("72", "on")):
                        result = round_(conn, batch, args.batches, retention)
                        print(f"{batch:>6} {label:>4} | {cell(result['pending'], batch):>29} | "
                              f"{cell(result['ack'], batch):>25}")
                logged = conn.execute("select count(*) from realtime.log").fetchone()[0]
                size = int(conn.execute(
                    "select sum(pg_total_relation_size(i.inhrelid)) from pg_inherits i "
                    "where i.inhparent = 'realtime.log'::regclass").fetchone()[0])
                per_change = size / max(1, logged)
                print(f"\nlog: {logged} changes kept, {size / 1e6:.1f} MB with indexes: "
                      f"{per_change:.0f} B per change, {per_change:.0f} MB per million changes "
                      f"(row image of ~130 B JSON)")
                per_day = args.per_second * 86400
                print(f"at {args.per_second:g} changes/s: {per_day:,.0f} rows/day, "
                      f"{per_day * 3 * per_change / 1e9:.1f} GB kept over 72 h")
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
