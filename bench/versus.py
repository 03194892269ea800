"""Ripple against the AWS sample's algorithm, side by side in one run, on the same local gateway.

For each subscriber count N the script opens N raw WebSocket connections to the local stack's
gateway and joins each to `realtime:bench` with one unfiltered INSERT binding on
`public.bench_items`. On those same sockets it then measures two ways of getting one committed
row to all of them:

- **ripple**: the row is committed to `public.bench_items` (published); the trigger, the wake-up
  bridge and the fanout do the rest, exactly as `make dev` runs them;
- **sample**: the row is committed to `public.bench_peer_items` (not published, so Ripple stays
  out of it) and handed to `sample_chat.SampleChat.send`, the `sendmessage` algorithm of AWS's
  `simple-websockets-chat-app`: Scan the connections table, post to every connection on 32
  boto3 threads. It runs on one worker thread, one message at a time, like the fanout's single
  drainer; the frame it posts has the shape and size of Ripple's.

Per way and N:
- after one unmeasured change (the containers are warm, as in a running deployment),
  `--singles` changes committed one at a time on an idle stack: the latency of one change from
  `commit` returning to each arrival (p50, p99 over all their deliveries, and the slowest
  delivery of a change, median over the singles);
- a `--burst` of changes committed back to back: sustained deliveries per second, from the
  first commit to the last arrival;
- over both: CPU per delivery of the fanout (the threads that plan and post: the drainer and
  the poster for Ripple, the sendmessage worker and its 32 post threads for the sample, read
  from each thread's CPU clock) and of the whole server process (gateway and moto included);
- the requests per change: DynamoDB calls, Postgres round trips (Ripple's fanout), posts.

    PYTHONPATH=layers/ripple .venv/bin/python bench/versus.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/versus.py --subscribers 10,100 --burst 10
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

from fanout import TABLE, TOPIC, Counters, Subscribers, prepare_table, wait_until_idle
from harness import (
    Clients,
    WakeLog,
    configure,
    counts,
    local_stack,
    percentile,
    print_header,
    wait_for_cleanup,
)
from sample_chat import SampleChat

PEER_TABLE = "bench_peer_items"
PAYLOAD = "x" * 100
FANOUT_THREADS = ("ripple-poster", "ripple-boto3-post", "ripple-store")
SAMPLE_THREADS = ("sample-post",)


def threads_cpu(prefixes: tuple[str, ...]) -> float:
    """CPU seconds so far of the live threads whose names start with one of `prefixes`."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(prefixes) and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, ProcessLookupError):
                pass
    return total


class TimedWakeLog(WakeLog):
    """The harness's wake log, also adding up the CPU time of the threads that run the fanout."""

    def __init__(self, handler):
        super().__init__(handler)
        self.cpu = 0.0

    def __call__(self, event, context):
        started = time.thread_time()
        try:
            return super().__call__(event, context)
        finally:
            self.cpu += time.thread_time() - started


class SampleWorker:
    """The sample's `sendmessage`, one message at a time on a thread of its own."""

    def __init__(self, sample: SampleChat):
        self.sample = sample
        self.jobs: queue.Queue = queue.Queue()
        self.cpu = 0.0
        self.busy = 0
        self.thread = threading.Thread(target=self._run, name="sample-sendmessage", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (data := self.jobs.get()) is not None:
            started = time.thread_time()
            try:
                self.sample.send(data)
            finally:
                self.cpu += time.thread_time() - started
                self.busy -= 1

    def submit(self, data: str) -> None:
        self.busy += 1
        self.jobs.put(data)

    def wait_idle(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=10)
        self.sample.close()


def peer_frame(row_id: int, n: int, written_at: str) -> str:
    """What Ripple would push for this row, so both ways post frames of one shape and size."""
    record = {"id": row_id, "n": n, "payload": PAYLOAD, "written_at": written_at}
    columns = [{"name": k, "type": t} for k, t in (("id", "int8"), ("n", "int4"), ("payload", "text"),
                                                    ("written_at", "timestamptz"))]
    return json.dumps({"topic": TOPIC, "event": "postgres_changes", "ref": None, "payload": {
        "ids": [1], "data": {"schema": "public", "table": TABLE, "commit_timestamp": written_at,
                             "type": "INSERT", "columns": columns, "record": record,
                             "errors": None}}})


@dataclass
class Result:
    way: str
    subscribers: int
    joined: int = 0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    single_ms: list[float] = field(default_factory=list)
    single_last_ms: list[float] = field(default_factory=list)
    burst_deliveries: int = 0
    burst_seconds: float = 0.0
    fanout_cpu: float = 0.0
    process_cpu: float = 0.0
    changes: int = 0
    dynamodb: int = 0
    postgres: int = 0
    posts: int = 0

    @property
    def deliveries(self) -> int:
        return self.received


class Round:
    """One way of delivering, measured on the subscribers already joined."""

    def __init__(self, stack, clients: Clients, args, way: str, joined: int, wakes: TimedWakeLog,
                 worker: SampleWorker):
        self.stack, self.clients, self.args, self.way = stack, clients, args, way
        self.wakes, self.worker = wakes, worker
        self.result = Result(way=way, subscribers=args.count, joined=joined)

    def _idle(self) -> None:
        if self.way == "ripple":
            wait_until_idle(self.wakes, quiet=0.3)
        else:
            self.worker.wait_idle()

    def _commit(self, conn, j: int) -> tuple[int, float]:
        table = TABLE if self.way == "ripple" else PEER_TABLE
        row_id, written_at = conn.execute(
            f"insert into public.{table} (n, payload, written_at) values (%s, %s, now()) "
            "returning id, written_at::text", (j, PAYLOAD)).fetchone()
        conn.commit()
        committed = time.time()
        if self.way == "sample":
            self.worker.submit(peer_frame(row_id, j, written_at))
        return row_id, committed

    def _collect(self, committed: dict[int, float]) -> list[tuple[int, int, float]]:
        r = self.result
        expected = len(committed) * r.joined
        collected = self.clients.call("collect", expected=expected, stall_seconds=self.args.timeout)
        r.expected += expected
        seen: set[tuple[int, int]] = set()
        kept = []
        for index, row_id, arrived in collected["arrivals"]:
            if row_id not in committed:
                continue
            if (index, row_id) in seen:
                r.duplicates += 1
                continue
            seen.add((index, row_id))
            kept.append((index, row_id, arrived))
        r.received += len(seen)
        return kept

    def run(self) -> Result:
        import psycopg

        r = self.result
        with psycopg.connect(self.stack.db_url) as conn:
            # One change first, not measured: a running deployment's containers are warm.
            row_id, _ = self._commit(conn, 0)
            self.clients.call("collect", expected=r.joined, stall_seconds=self.args.timeout)
        self._idle()
        before = Counters.now()
        sample_calls, sample_posts = self.worker.sample.dynamodb_calls, self.worker.sample.posts
        cpu0 = (self.wakes.cpu + threads_cpu(FANOUT_THREADS)) if self.way == "ripple" else \
            (self.worker.cpu + threads_cpu(SAMPLE_THREADS))
        process0 = time.process_time()
        with psycopg.connect(self.stack.db_url) as conn:
            for j in range(self.args.singles):
                self._idle()
                row_id, at = self._commit(conn, j)
                arrivals = self._collect({row_id: at})
                latencies = sorted((arrived - at) * 1000 for _, _, arrived in arrivals)
                r.single_ms.extend(latencies)
                if latencies:
                    r.single_last_ms.append(latencies[-1])
            self._idle()
            committed: dict[int, float] = {}
            for j in range(self.args.burst):
                row_id, at = self._commit(conn, j)
                committed[row_id] = at
            arrivals = self._collect(committed)
            if arrivals:
                r.burst_deliveries = len(arrivals)
                r.burst_seconds = max(a for _, _, a in arrivals) - min(committed.values())
        self._idle()
        r.process_cpu = time.process_time() - process0
        r.changes = self.args.singles + self.args.burst
        if self.way == "ripple":
            r.fanout_cpu = self.wakes.cpu + threads_cpu(FANOUT_THREADS) - cpu0
            cost = Counters.now() - before
            r.dynamodb, r.postgres, r.posts = cost.dynamodb, cost.postgres, cost.posts
        else:
            r.fanout_cpu = self.worker.cpu + threads_cpu(SAMPLE_THREADS) - cpu0
            r.dynamodb = self.worker.sample.dynamodb_calls - sample_calls
            r.posts = self.worker.sample.posts - sample_posts
        r.single_ms.sort()
        return r


def prepare_peer_table(db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"create table if not exists public.{PEER_TABLE} (id bigserial primary key, "
                     "n int, payload text, written_at timestamptz)")


def render(results: list[Result]) -> str:
    header = ("| way | subscribers | delivered / expected | one change p50 ms | p99 ms | last ms "
              "| sustained deliveries/s | fanout CPU µs / delivery | process CPU µs / delivery "
              "| DynamoDB calls / change | PG round trips / change | posts / change |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        per = max(r.changes, 1)
        rate = r.burst_deliveries / r.burst_seconds if r.burst_seconds else 0.0
        delivered = f"{r.received} / {r.expected}" + (f" ({r.duplicates} duplicate)" if r.duplicates else "")
        last = statistics.median(r.single_last_ms) if r.single_last_ms else float("nan")
        pg = f"{r.postgres / per:.2f}" if r.way == "ripple" else "-"
        lines.append(
            f"| {r.way} | {r.subscribers} | {delivered} | {percentile(r.single_ms, 50):.1f} "
            f"| {percentile(r.single_ms, 99):.1f} | {last:.1f} | {rate:.0f} "
            f"| {r.fanout_cpu / max(r.received, 1) * 1e6:.0f} | {r.process_cpu / max(r.received, 1) * 1e6:.0f} "
            f"| {r.dynamodb / per:.2f} | {pg} | {r.posts / per:.2f} |")
    return "\n".join(lines)


def ratios(results: list[Result]) -> list[str]:
    """Ripple's sustained rate and CPU against the sample's, per N."""
    by = {(r.way, r.subscribers): r for r in results}
    lines = []
    for (way, n), ripple in sorted(by.items(), key=lambda kv: kv[0][1]):
        sample = by.get(("sample", n))
        if way != "ripple" or sample is None or not sample.burst_seconds or not ripple.burst_seconds:
            continue
        rate = (ripple.burst_deliveries / ripple.burst_seconds) / (sample.burst_deliveries / sample.burst_seconds)
        cpu = (sample.fanout_cpu / max(sample.received, 1)) / max(ripple.fanout_cpu / max(ripple.received, 1), 1e-9)
        p50 = percentile(ripple.single_ms, 50) - percentile(sample.single_ms, 50)
        lines.append(f"N={n}: ripple sustains {rate:.2f}x the sample's deliveries/s, spends 1/{cpu:.1f} "
                     f"of its fanout CPU per delivery; one change's p50 {p50:+.1f} ms against the sample's")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", dest="counts", type=counts, default="10,100,1000",
                        help="comma-separated subscriber counts, one round each (default: 10,100,1000)")
    parser.add_argument("--singles", type=int, default=10,
                        help="changes committed one at a time on an idle stack (default: %(default)s)")
    parser.add_argument("--burst", type=int, default=20,
                        help="changes then committed back to back (default: %(default)s)")
    parser.add_argument("--ways", default="ripple,sample",
                        help="which ways to measure, in order (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="subscribers connecting and joining at once (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="give up waiting for deliveries after this many seconds without one "
                             "(default: %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure()
    from ripple.local.stack import CONNECTIONS_TABLE, REGION

    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    print_header(f"per N: {args.singles} single changes on an idle stack, then {args.burst} back to "
                 f"back, by each way ({', '.join(ways)}) to the same N sockets; latency = arrival at "
                 f"the client - commit returned; Ripple's poster: {os.environ.get('RIPPLE_POSTER', 'lean')}")
    results: list[Result] = []
    started = time.monotonic()
    with local_stack() as stack:
        clients = worker = None
        try:
            prepare_table(stack.db_url)
            prepare_peer_table(stack.db_url)
            consumer = stack.bridge.consumers["realtime_outbox"]
            wakes = TimedWakeLog(consumer.handler)
            consumer.handler = wakes
            worker = SampleWorker(SampleChat(stack.aws_url, stack.api_url, CONNECTIONS_TABLE, REGION))
            clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Subscribers)
            for count in args.counts:
                print(f"  {count} subscribers ...", file=sys.stderr, flush=True)
                opened = clients.call("open", count=count, eq=False, concurrency=args.concurrency)
                if opened["failed"]:
                    print(f"  {opened['failed']} of {count} failed to join, e.g. {opened['failures']}",
                          file=sys.stderr)
                print(f"  {opened['joined']} joined in {opened['seconds']:.1f} s", file=sys.stderr, flush=True)
                args.count = count
                for way in ways:
                    results.append(Round(stack, clients, args, way, opened["joined"], wakes, worker).run())
                    print(f"  {way}/{count} done", file=sys.stderr, flush=True)
                clients.call("close")
                left = wait_for_cleanup(stack.aws_url)
                if left:
                    print(f"  $disconnect left {left} connection/binding rows behind", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted; stopping the stack", file=sys.stderr)
        finally:
            if clients is not None:
                clients.stop()
            if worker is not None:
                worker.stop()
    print()
    print(render(results))
    print()
    for line in ratios(results):
        print(line)
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
