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

With `--shards 1,2` Ripple's rounds run once per number of posters K (RIPPLE_POSTER_SHARDS),
the fanout created anew for each; the CPU of its poster processes counts as fanout CPU.

    PYTHONPATH=layers/ripple .venv/bin/python bench/versus.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/versus.py --subscribers 10,100 --burst 10
    PYTHONPATH=layers/ripple .venv/bin/python bench/versus.py --subscribers 1000,10000 --shards 1,2
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import resource
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
FANOUT_THREADS = ("ripple-poster", "ripple-boto3-post", "ripple-store", "ripple-shard")
SAMPLE_THREADS = ("sample-post",)
# Sockets besides the subscribers' own: Postgres, moto, the poster pools, files, pipes.
SPARE_FILES = 1024
# After each round the sockets close and the run waits until `$disconnect` has removed every row
# (and reports any left). Locally each `$disconnect` Queries an index that moto scans whole, so N
# departures cost O(N²): about a minute at 1,000, hours at 10,000. A last round larger than this
# is not followed by that wait: the stack stops with its sockets open.
CLEANUP_CHECK_MAX = 2000


def raise_file_limit(sockets: int) -> int:
    """Raise this process's open-file limit to its hard limit (the clients' process, spawned
    after, inherits it): the gateway holds one socket per subscriber, and so do the clients.
    Raises SystemExit with what to do when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + SPARE_FILES
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SystemExit(f"{sockets} subscribers need about {wanted} open files per process; the hard "
                         f"limit is {hard} (raise it, e.g. `ulimit -Hn {wanted}` as root)")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _proc_stats() -> dict[int, tuple[int, str, float]]:
    """Every process's (parent, name, CPU seconds) from /proc; empty where there is no /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # After the name: state, ppid, ... utime and stime are the 12th and 13th.
        stats[int(entry)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks)
    return stats


def machine_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks so far, all cores, from /proc/stat; (0, 0) without it."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many of the machine's cores were busy on average between two machine_ticks()."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total > 0 else float("nan")


def _descendants(stats: dict[int, tuple[int, str, float]], pid: int, skip: set[int]) -> list[int]:
    """The processes under `pid` (not itself), leaving out Postgres and the subtrees of `skip`."""
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(child)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        current = todo.pop()
        if current in skip or stats[current][1].startswith("postgres"):
            continue
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def parts_cpu(server: int, gateway: int | None, clients: int) -> dict[str, float]:
    """CPU seconds so far of the run's parts: this process with its poster processes (the
    fanout, moto, the bridge), the gateway's process, the clients' process, and Postgres (its
    own user's processes, detached from the stack's process tree: found by name)."""
    stats = _proc_stats()

    def tree(pid: int | None, skip: set[int]) -> float:
        if pid is None or pid not in stats:
            return 0.0
        return stats[pid][2] + sum(stats[p][2] for p in _descendants(stats, pid, skip))

    return {"server": tree(server, {gateway or -1, clients}), "gateway": tree(gateway, set()),
            "clients": tree(clients, set()),
            "postgres": sum(cpu for _, name, cpu in stats.values() if name.startswith("postgres"))}


def workers_cpu(exclude: set[int]) -> dict[int, float]:
    """CPU seconds so far of this process's live descendants, Postgres and `exclude` (the
    clients' process) left out: the fanout's poster processes, when it has any."""
    stats = _proc_stats()
    return {pid: stats[pid][2] for pid in _descendants(stats, os.getpid(), exclude)}


def cpu_since(before: dict[int, float], exclude: set[int]) -> float:
    """CPU seconds the descendants spent since `before` (processes started since count whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in workers_cpu(exclude).items())


def use_shards(k: int) -> None:
    """Have the next fanout post through `k` posters: the setting, then a fanout created anew
    (settings and the fanout are read once per container)."""
    from ripple.config import settings
    from ripple.outbox.drain import fanout

    os.environ["RIPPLE_POSTER_SHARDS"] = str(k)
    settings.cache_clear()
    fanout.cache_clear()


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

    def wait_idle(self, timeout: float = 900.0) -> None:
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
    shards: int = 1
    joined: int = 0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    single_ms: list[float] = field(default_factory=list)
    single_last_ms: list[float] = field(default_factory=list)
    burst_deliveries: int = 0
    burst_seconds: float = 0.0
    # Cores of the whole machine busy during the burst (every process: server, clients, Postgres),
    # and per part of the run (parts_cpu).
    burst_busy: float = float("nan")
    burst_parts: dict[str, float] = field(default_factory=dict)
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
                 worker: SampleWorker, shards: int = 1):
        self.stack, self.clients, self.args, self.way = stack, clients, args, way
        self.wakes, self.worker = wakes, worker
        self.result = Result(way=way, subscribers=args.count, shards=shards, joined=joined)
        self.singles, self.burst = changes_for(args, way, args.count)
        # The gateway's own process (the benchmarks split it off) is not the fanout's: its CPU
        # counts in the process column only.
        self.gateway_pid = getattr(stack.gateway, "pid", None)
        self.exclude = {clients.process.pid} | ({self.gateway_pid} if self.gateway_pid else set())

    def _parts(self) -> dict[str, float]:
        return parts_cpu(os.getpid(), self.gateway_pid, self.clients.process.pid)

    def _gateway_cpu(self) -> float:
        return _proc_stats().get(self.gateway_pid, (0, "", 0.0))[2] if self.gateway_pid else 0.0

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
        workers0 = workers_cpu(self.exclude)
        process0 = time.process_time() + self._gateway_cpu()
        with psycopg.connect(self.stack.db_url) as conn:
            for j in range(self.singles):
                self._idle()
                row_id, at = self._commit(conn, j)
                arrivals = self._collect({row_id: at})
                latencies = sorted((arrived - at) * 1000 for _, _, arrived in arrivals)
                r.single_ms.extend(latencies)
                if latencies:
                    r.single_last_ms.append(latencies[-1])
            self._idle()
            committed: dict[int, float] = {}
            ticks = machine_ticks()
            parts0, burst0 = self._parts(), time.monotonic()
            for j in range(self.burst):
                row_id, at = self._commit(conn, j)
                committed[row_id] = at
            arrivals = self._collect(committed)
            r.burst_busy = busy_cores(ticks, machine_ticks())
            elapsed = max(time.monotonic() - burst0, 1e-9)
            r.burst_parts = {k: (v - parts0.get(k, 0.0)) / elapsed for k, v in self._parts().items()}
            if arrivals:
                r.burst_deliveries = len(arrivals)
                r.burst_seconds = max(a for _, _, a in arrivals) - min(committed.values())
        self._idle()
        workers = cpu_since(workers0, self.exclude)
        r.process_cpu = time.process_time() + self._gateway_cpu() - process0 + workers
        r.changes = self.singles + self.burst
        if self.way == "ripple":
            r.fanout_cpu = self.wakes.cpu + threads_cpu(FANOUT_THREADS) - cpu0 + workers
            cost = Counters.now() - before
            r.dynamodb, r.postgres, r.posts = cost.dynamodb, cost.postgres, cost.posts
        else:
            r.fanout_cpu = self.worker.cpu + threads_cpu(SAMPLE_THREADS) - cpu0
            r.dynamodb = self.worker.sample.dynamodb_calls - sample_calls
            r.posts = self.worker.sample.posts - sample_posts
        r.single_ms.sort()
        return r


def changes_for(args, way: str, count: int) -> tuple[int, int]:
    """The singles and the burst `way` commits at N = `count`: the options', except that the
    sample's are each cut to at most `--sample-deliveries` deliveries (at least one change):
    every message of the sample Scans the whole connections table, which costs moto about 1 ms
    of CPU per item, so at N = 10,000 each of its changes takes tens of seconds locally."""
    if way != "sample" or not args.sample_deliveries:
        return args.singles, args.burst
    most = max(1, args.sample_deliveries // max(count, 1))
    return min(args.singles, most), min(args.burst, most)


def sample_cuts(args, ways: list[str]) -> str:
    """What the workload line says about the sample's smaller rounds, if any are smaller."""
    if "sample" not in ways:
        return ""
    cut = [(n, changes_for(args, "sample", n)) for n in args.counts]
    cut = [(n, c) for n, c in cut if c != (args.singles, args.burst)]
    if not cut:
        return ""
    return "; the sample, at most {} deliveries per phase: {}".format(
        args.sample_deliveries, ", ".join(f"N={n}: {s} singles, then {b} back to back" for n, (s, b) in cut))


def prepare_peer_table(db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"create table if not exists public.{PEER_TABLE} (id bigserial primary key, "
                     "n int, payload text, written_at timestamptz)")


def render(results: list[Result]) -> str:
    header = ("| way | subscribers | K | delivered / expected | one change p50 ms | p99 ms | last ms "
              f"| sustained deliveries/s | machine busy, cores of {os.cpu_count()} | fanout CPU µs / delivery | process CPU µs / delivery "
              "| DynamoDB calls / change | PG round trips / change | posts / change |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        per = max(r.changes, 1)
        rate = r.burst_deliveries / r.burst_seconds if r.burst_seconds else 0.0
        delivered = f"{r.received} / {r.expected}" + (f" ({r.duplicates} duplicate)" if r.duplicates else "")
        last = statistics.median(r.single_last_ms) if r.single_last_ms else float("nan")
        pg = f"{r.postgres / per:.2f}" if r.way == "ripple" else "-"
        lines.append(
            f"| {r.way} | {r.subscribers} | {r.shards if r.way == 'ripple' else '-'} | {delivered} | {percentile(r.single_ms, 50):.1f} "
            f"| {percentile(r.single_ms, 99):.1f} | {last:.1f} | {rate:.0f} | {r.burst_busy:.2f} "
            f"| {r.fanout_cpu / max(r.received, 1) * 1e6:.0f} | {r.process_cpu / max(r.received, 1) * 1e6:.0f} "
            f"| {r.dynamodb / per:.2f} | {pg} | {r.posts / per:.2f} |")
    return "\n".join(lines)


def render_parts(results: list[Result]) -> str:
    """Where the bursts' CPU went: cores busy on average per part of the run."""
    lines = [f"| way | subscribers | K | server process, cores | gateway process | clients process "
             f"| Postgres | machine, of {os.cpu_count()} |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        parts = r.burst_parts
        lines.append(f"| {r.way} | {r.subscribers} | {r.shards if r.way == 'ripple' else '-'} | "
                     + " | ".join(f"{parts.get(k, float('nan')):.2f}" for k in ("server", "gateway", "clients", "postgres"))
                     + f" | {r.burst_busy:.2f} |")
    return "\n".join(lines)


def _rate(r: Result) -> float:
    return r.burst_deliveries / r.burst_seconds if r.burst_seconds else 0.0


def ratios(results: list[Result]) -> list[str]:
    """Ripple's sustained rate and CPU against the sample's, per N (and K); then, at each N
    measured with more than one K, each K's rate against K = 1's."""
    samples = {r.subscribers: r for r in results if r.way == "sample"}
    lines = []
    for ripple in sorted((r for r in results if r.way == "ripple"), key=lambda r: (r.subscribers, r.shards)):
        sample = samples.get(ripple.subscribers)
        if sample is None or not _rate(sample) or not _rate(ripple):
            continue
        cpu = (sample.fanout_cpu / max(sample.received, 1)) / max(ripple.fanout_cpu / max(ripple.received, 1), 1e-9)
        p50 = percentile(ripple.single_ms, 50) - percentile(sample.single_ms, 50)
        lines.append(f"N={ripple.subscribers}, K={ripple.shards}: ripple sustains {_rate(ripple) / _rate(sample):.2f}x "
                     f"the sample's deliveries/s, spends 1/{cpu:.1f} of its fanout CPU per delivery; one "
                     f"change's p50 {p50:+.1f} ms against the sample's")
    by_n: dict[int, dict[int, Result]] = {}
    for r in results:
        if r.way == "ripple":
            by_n.setdefault(r.subscribers, {})[r.shards] = r
    for n, by_k in sorted(by_n.items()):
        one = by_k.get(1)
        for k, r in sorted(by_k.items()):
            if k != 1 and one is not None and _rate(one):
                # At K = 1's CPU per delivery (every process counted), the most any K can
                # reach on this machine is all of its cores busy instead of K = 1's share.
                ceiling = (os.cpu_count() or 1) / one.burst_busy if one.burst_busy > 0 else float("nan")
                lines.append(f"N={n}: K={k} vs K=1 deliveries/s: {_rate(r) / _rate(one):.2f}x "
                             f"({_rate(r):.0f} against {_rate(one):.0f}); the machine's ceiling at "
                             f"K=1's CPU per delivery: {ceiling:.2f}x ({os.cpu_count()} cores "
                             f"/ {one.burst_busy:.2f} busy at K=1)")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", dest="counts", type=counts, default="10,100,1000",
                        help="comma-separated subscriber counts, one round each (default: 10,100,1000)")
    parser.add_argument("--singles", type=int, default=10,
                        help="changes committed one at a time on an idle stack (default: %(default)s)")
    parser.add_argument("--burst", type=int, default=20,
                        help="changes then committed back to back (default: %(default)s)")
    parser.add_argument("--sample-deliveries", type=int, default=30_000,
                        help="cut the sample's singles and its burst each to at most this many "
                             "deliveries (changes x N; 0: no cut), said in the workload line "
                             "(default: %(default)s)")
    parser.add_argument("--ways", default="ripple,sample",
                        help="which ways to measure, in order (default: %(default)s)")
    parser.add_argument("--shards", type=counts, default=None,
                        help="comma-separated numbers of posters K: Ripple's rounds run once per K, "
                             "with RIPPLE_POSTER_SHARDS=K (default: as the environment says)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="subscribers connecting and joining at once (default: %(default)s)")
    parser.add_argument("--warm-max-age", type=float, default=None, metavar="SECONDS",
                        help="RIPPLE_WARM_MAX_AGE_SECONDS for the run (default: the setting's, 60): how "
                             "long the fanout trusts a warm bucket whose version has not changed. At "
                             "N = 10,000 each re-read is a Query of every binding, which costs moto "
                             "1-2.5 ms of CPU per item; longer than the run keeps that out of it")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="give up waiting for deliveries after this many seconds without one "
                             "(default: %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.warm_max_age is not None:
        os.environ["RIPPLE_WARM_MAX_AGE_SECONDS"] = str(args.warm_max_age)
    configure()
    from ripple.config import settings
    from ripple.local.stack import CONNECTIONS_TABLE, REGION

    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    raise_file_limit(max(args.counts))
    print_header(f"per N: {args.singles} single changes on an idle stack, then {args.burst} back to "
                 f"back, by each way ({', '.join(ways)}) to the same N sockets; latency = arrival at "
                 f"the client - commit returned; Ripple's poster: {os.environ.get('RIPPLE_POSTER', 'lean')}"
                 f"; warm buckets re-read after {os.environ.get('RIPPLE_WARM_MAX_AGE_SECONDS', '60')} s"
                 f"{sample_cuts(args, ways)}")
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
            for position, count in enumerate(args.counts, 1):
                print(f"  {count} subscribers ...", file=sys.stderr, flush=True)
                opened = clients.call("open", count=count, eq=False, concurrency=args.concurrency)
                if opened["failed"]:
                    print(f"  {opened['failed']} of {count} failed to join, e.g. {opened['failures']}",
                          file=sys.stderr)
                print(f"  {opened['joined']} joined in {opened['seconds']:.1f} s", file=sys.stderr, flush=True)
                args.count = count
                for way in ways:
                    for k in (args.shards or [None]) if way == "ripple" else [1]:
                        if k is not None and way == "ripple":
                            use_shards(k)
                        shards = k or settings().poster_shards
                        results.append(Round(stack, clients, args, way, opened["joined"], wakes, worker,
                                             shards).run())
                        print(f"  {way}/{count}" + (f" K={shards}" if way == "ripple" else "") + " done",
                              file=sys.stderr, flush=True)
                if position == len(args.counts) and count > CLEANUP_CHECK_MAX:
                    # Nothing joins after the last round: the stack stops with the sockets open.
                    print(f"  {count} sockets left open: their $disconnects are not waited for",
                          file=sys.stderr, flush=True)
                    continue
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
    print(render_parts(results))
    print()
    for line in ratios(results):
        print(line)
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
