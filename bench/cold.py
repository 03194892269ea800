"""What one wake-up of an idle fanout pays before it does anything: the same small operations,
back to back and after the thread has been idle, in CPU time of the calling thread.

A single change on an idle stack is one wake-up: its drain runs each of its code paths once,
after the process slept. This prints, per operation, the thread's CPU time per call when the
calls follow each other and when each comes after an idle gap (the thread sleeping, as the
fanout does between wake-ups):

- `sleep`: the thread sleeping and waking up, nothing else;
- `select 1`: one psycopg statement on the local stack's Postgres;
- `version read`: the drain's BatchGetItem of three bucket versions (store.lean) against moto.

    PYTHONPATH=layers/ripple .venv/bin/python bench/cold.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/cold.py --calls 200 --gaps 0,1,20,100
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from harness import configure, counts, local_stack, print_header


def per_call(operation: Callable[[], object], calls: int, gap_seconds: float) -> float:
    """The calling thread's CPU seconds per call, each call after `gap_seconds` of sleep."""
    operation()
    spent = 0.0
    for _ in range(calls):
        if gap_seconds:
            time.sleep(gap_seconds)
        started = time.thread_time()
        operation()
        spent += time.thread_time() - started
    return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per cell (default: %(default)s)")
    parser.add_argument("--gaps", type=counts, default="0,2,20,100",
                        help="idle gaps before each call, in ms (default: 0,2,20,100)")
    args = parser.parse_args()
    configure()
    import psycopg

    from ripple.store import DynamoDBStore

    print_header(f"{args.calls} calls per cell; CPU time of the calling thread per call, in µs")
    with local_stack() as stack, psycopg.connect(stack.db_url, autocommit=True) as conn:
        store = DynamoDBStore.from_settings()
        buckets = ["public.bench_items", "public.*", "*.*"]
        operations = {
            "sleep (nothing else)": lambda: None,
            "select 1 (psycopg)": lambda: conn.execute("select 1").fetchall(),
            "version read (BatchGetItem, 3 keys)": lambda: store._versions(buckets),
        }
        header = "| operation | " + " | ".join(f"after {g} ms idle" if g else "back to back" for g in args.gaps) + " |"
        print()
        print(header)
        print("|" + "---|" * (len(args.gaps) + 1))
        for name, operation in operations.items():
            if name.startswith("sleep"):
                cells = [per_call(lambda seconds=g / 1000: time.sleep(seconds), args.calls, 0.0) if g else 0.0
                         for g in args.gaps]
            else:
                cells = [per_call(operation, args.calls, g / 1000) for g in args.gaps]
            print(f"| {name} | " + " | ".join(f"{c * 1e6:.0f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
