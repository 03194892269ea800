"""Fan-out benchmark: what one committed change costs as the number of subscribers grows.

For each subscriber count N the script opens N raw WebSocket connections to the local stack's
gateway, joins each to a channel with one INSERT binding on `public.bench_items`, commits
`--changes` rows one transaction at a time, and measures:

- deliveries received against expected, and latency from `commit` returning to the frame
  arriving at a client (p50/p95/p99);
- deliveries per second, from the first commit to the last arrival;
- per change: DynamoDB requests, Postgres statements and PostToConnection calls made by the
  fanout, read from the counters of its adapters (`ripple.outbox.drain.fanout()`'s
  `store.calls`, `db.round_trips`, `api.posts`) around the round's commits and deliveries.

Modes (`--mode`):
- `all`: every subscriber's binding is unfiltered, so each change goes to all N;
- `eq`: subscriber i filters on `n=eq.<i>` and change j sets `n = j mod N`, so each change
  matches one subscriber. This shows the equality index: DynamoDB requests per change stay
  flat as N grows, and there is one delivery per change.

Everything runs on one machine: Postgres, moto (DynamoDB) and the fanout in this process, the
gateway with its route handlers in a process of its own (`--gateway-in-process` keeps it here),
and the clients in another so their frame parsing does not share the server's interpreter lock. The request counts carry over to AWS; the latencies and rates are
those of the local stack on this machine.

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/fanout.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/fanout.py --subscribers 10,100 --mode eq
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

from harness import (
    Clients,
    WakeLog,
    add_round_options,
    configure,
    latency_cells,
    local_stack,
    print_header,
    wait_for_cleanup,
    watch_fanout,
)

TABLE = "bench_items"
TOPIC = "realtime:bench"
PAYLOAD = "x" * 100


# -- the clients' process ------------------------------------------------------------------------

def _join_frame(filter_value: int | None, tables: tuple[str, ...], access_token: str | None
                ) -> str:
    bindings = [{"event": "INSERT", "schema": "public", "table": table} for table in tables]
    if filter_value is not None:
        for binding in bindings:
            binding["filter"] = f"n=eq.{filter_value}"
    payload: dict = {"config": {"postgres_changes": bindings}}
    if access_token is not None:
        payload["access_token"] = access_token
    return json.dumps({"topic": TOPIC, "event": "phx_join", "ref": "1", "join_ref": "1",
                       "payload": payload})


class Subscribers:
    """N sockets in one event loop; each records (subscriber, row id, arrival time) per change.

    The clients' party of `harness.Clients`: its coroutines are the parent's commands.
    """

    def __init__(self, url: str):
        self.url = url
        self.sockets: list = []
        self.joined: list[int] = []
        self.readers: list[asyncio.Task] = []
        self.arrivals: list[tuple[int, int, float]] = []
        self.other_frames = 0
        self.progress = asyncio.Event()

    async def open(self, count: int, eq: bool, concurrency: int,
                   tables: tuple[str, ...] = (TABLE,), tokens: list[str] | None = None) -> dict:
        """Connect and join `count` subscribers, `concurrency` at a time, each with one INSERT
        binding per table; subscriber i joins with `tokens[i]` as its `access_token` when tokens
        are given. Returns, among others, the indexes of the subscribers that joined."""
        from websockets.asyncio.client import connect

        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(index: int) -> None:
            async with gate:
                try:
                    ws = await connect(self.url, open_timeout=120, ping_interval=None,
                                       close_timeout=10, max_queue=None)
                    await ws.send(_join_frame(index if eq else None, tables,
                                              tokens[index] if tokens else None))
                    await self._await_subscribed(ws)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
            self.sockets.append(ws)
            self.joined.append(index)
            self.readers.append(asyncio.create_task(self._read(index, ws)))

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        return {"joined": len(self.sockets), "seconds": time.monotonic() - started,
                "failures": failures[:5], "failed": len(failures), "indexes": sorted(self.joined)}

    @staticmethod
    async def _await_subscribed(ws) -> None:
        # The join reply comes first, then the system message once the binding is stored.
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
            if msg.get("event") == "phx_reply" and msg["payload"].get("status") != "ok":
                raise RuntimeError(f"join refused: {msg['payload']}")
            if msg.get("event") == "system":
                if msg["payload"].get("status") != "ok":
                    raise RuntimeError(f"subscription failed: {msg['payload']}")
                return

    async def _read(self, index: int, ws) -> None:
        try:
            async for raw in ws:
                arrived = time.time()
                msg = json.loads(raw)
                if msg.get("event") == "postgres_changes":
                    row_id = int(msg["payload"]["data"]["record"]["id"])
                    self.arrivals.append((index, row_id, arrived))
                    self.progress.set()
                else:
                    self.other_frames += 1
        except Exception:
            pass  # closed by us or by the gateway; the parent counts what is missing

    async def collect(self, expected: int, stall_seconds: float) -> dict:
        """Wait for `expected` arrivals, giving up after `stall_seconds` without a new one, and
        hand them over: the next collect counts from zero."""
        while len(self.arrivals) < expected:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), timeout=stall_seconds)
            except TimeoutError:
                break
        arrivals, self.arrivals = self.arrivals, []
        other_frames, self.other_frames = self.other_frames, 0
        return {"arrivals": arrivals, "other_frames": other_frames}

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.sockets, self.joined, self.readers = [], [], []
        self.arrivals, self.other_frames = [], 0


# -- the server's side ---------------------------------------------------------------------------

@dataclass
class Counters:
    """The fanout's cost counters, read from the handlers' singletons in this process."""

    dynamodb: int = 0
    postgres: int = 0
    posts: int = 0

    @classmethod
    def now(cls) -> Counters:
        from ripple.outbox.drain import fanout

        # The same cached instance the fanout handler runs on.
        running = fanout()
        return cls(running.store.calls, running.db.round_trips, running.api.posts)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.dynamodb - other.dynamodb, self.postgres - other.postgres,
                        self.posts - other.posts)


@dataclass
class Result:
    mode: str
    subscribers: int
    changes: int
    joined: int = 0
    join_seconds: float = 0.0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    misdirected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    span_seconds: float = 0.0
    runs: int = 0
    drained: list[int] = field(default_factory=list)  # changes per run that found any
    longest_run_seconds: float = 0.0
    cost: Counters = field(default_factory=Counters)


def prepare_table(db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"create table if not exists public.{TABLE} (id bigserial primary key, "
                     "n int, payload text, written_at timestamptz)")
        # Subscribers join with the anon key; as on Supabase, anon may read the public table.
        conn.execute(f"grant select on public.{TABLE} to anon, authenticated")
        published = conn.execute("select 1 from pg_publication_tables where pubname = "
                                 "'supabase_realtime' and tablename = %s", (TABLE,)).fetchone()
        if not published:
            conn.execute(f"alter publication supabase_realtime add table public.{TABLE}")


def wait_until_idle(wakes: WakeLog, quiet: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the fanout is not running and its counters have not moved for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = Counters.now(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = Counters.now()
        if current != last or wakes.running:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def run_round(stack, clients: Clients, wakes: WakeLog, args, mode: str, count: int) -> Result:
    import psycopg

    eq = mode == "eq"
    result = Result(mode=mode, subscribers=count, changes=args.changes)
    opened = clients.call("open", count=count, eq=eq, concurrency=args.concurrency)
    result.joined, result.join_seconds = opened["joined"], opened["seconds"]
    if opened["failed"]:
        print(f"  {opened['failed']} of {count} subscribers failed to join, "
              f"e.g. {opened['failures']}", file=sys.stderr)

    wait_until_idle(wakes)
    before, wakes.runs = Counters.now(), []
    targets: dict[int, int] = {}  # row id -> n
    committed: dict[int, float] = {}  # row id -> time.time() right after commit returned
    interval = args.interval_ms / 1000
    with psycopg.connect(stack.db_url) as conn:
        start = time.monotonic()
        for j in range(args.changes):
            if interval:
                time.sleep(max(0.0, start + j * interval - time.monotonic()))
            n = j % count if eq else j
            row_id = conn.execute(f"insert into public.{TABLE} (n, payload, written_at) "
                                  "values (%s, %s, now()) returning id", (n, PAYLOAD)).fetchone()[0]
            conn.commit()
            committed[row_id] = time.time()
            targets[row_id] = n

    # Only the subscribers still joined can receive; a failed join is reported, not waited for.
    result.expected = len(targets) if eq else len(targets) * result.joined
    collected = clients.call("collect", expected=result.expected, stall_seconds=args.timeout)
    if collected["other_frames"]:
        print(f"  {collected['other_frames']} frames other than postgres_changes arrived",
              file=sys.stderr)
    wait_until_idle(wakes)
    result.cost = Counters.now() - before
    result.runs = len(wakes.runs)
    result.drained = [stats["changes"] for _, stats in wakes.runs if stats["changes"]]
    result.longest_run_seconds = max((seconds for seconds, _ in wakes.runs), default=0.0)

    seen: set[tuple[int, int]] = set()
    last_arrival = 0.0
    for index, row_id, arrived in collected["arrivals"]:
        if row_id not in committed:
            continue
        if eq and targets[row_id] != index:
            result.misdirected += 1
            continue
        if (index, row_id) in seen:
            result.duplicates += 1
            continue
        seen.add((index, row_id))
        result.latencies_ms.append((arrived - committed[row_id]) * 1000)
        last_arrival = max(last_arrival, arrived)
    result.received = len(seen)
    result.latencies_ms.sort()
    if committed and last_arrival:
        result.span_seconds = last_arrival - min(committed.values())

    clients.call("close")
    left = wait_for_cleanup(stack.aws_url)
    if left:
        print(f"  $disconnect left {left} connection/binding rows behind", file=sys.stderr)
    return result


def render(results: list[Result]) -> str:
    header = ("| mode | subscribers | changes | delivered / expected | p50 ms | p95 ms | p99 ms "
              "| deliveries/s | fanout runs | DynamoDB calls / change | PG round trips / change "
              "| PostToConnection / change | DynamoDB calls / run | PG round trips / run |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        per, runs = max(r.changes, 1), max(r.runs, 1)
        rate = r.received / r.span_seconds if r.span_seconds else 0.0
        notes = []
        if r.duplicates:
            notes.append(f"{r.duplicates} duplicate")
        if r.misdirected:
            notes.append(f"{r.misdirected} misdirected")
        delivered = f"{r.received} / {r.expected}" + (f" ({', '.join(notes)})" if notes else "")
        lines.append(
            f"| {r.mode} | {r.subscribers} | {r.changes} | {delivered} "
            f"| {latency_cells(r.latencies_ms)} | {rate:.0f} | {r.runs} "
            f"| {r.cost.dynamodb / per:.2f} | {r.cost.postgres / per:.2f} "
            f"| {r.cost.posts / per:.2f} "
            f"| {r.cost.dynamodb / runs:.1f} | {r.cost.postgres / runs:.1f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50,
                        help="rows committed per round, one transaction each "
                             "(default: %(default)s)")
    parser.add_argument("--mode", choices=("all", "eq", "both"), default="both",
                        help="unfiltered fan-out to all, one eq-filtered match per change, or both "
                             "(default: %(default)s)")
    add_round_options(parser, sizes="--subscribers", sizes_help="subscriber counts, one round each",
                      interval_ms=20.0, who="subscribers",
                      interval_help="pace between commits; 0 commits as fast as possible")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure()

    pacing = (f"one commit every {args.interval_ms:g} ms" if args.interval_ms
              else "commits back to back")
    print_header(f"{args.changes} INSERTs per round on public.{TABLE}, {pacing}; "
                 f"latency = arrival at the client - commit returned")

    modes = ["all", "eq"] if args.mode == "both" else [args.mode]
    results: list[Result] = []
    started = time.monotonic()
    with local_stack() as stack:
        clients = None
        try:
            prepare_table(stack.db_url)
            wakes = watch_fanout(stack)
            clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Subscribers)
            # Once an eq join registers column n, every later run also Queries the buckets of
            # the n values it drains, so the unfiltered rounds run first to measure them alone.
            for mode in modes:
                for count in args.counts:
                    print(f"  {mode}: {count} subscribers ...", file=sys.stderr, flush=True)
                    results.append(run_round(stack, clients, wakes, args, mode, count))
        except KeyboardInterrupt:
            print("interrupted; stopping the stack", file=sys.stderr)
        finally:
            if clients is not None:
                clients.stop()
    print()
    print(render(results))
    print()
    for r in results:
        drained = (f"{min(r.drained)}-{max(r.drained)} (median {statistics.median(r.drained):g})"
                   if r.drained else "-")
        print(f"{r.mode}/{r.subscribers}: {r.joined} joined in {r.join_seconds:.1f} s; "
              f"{r.runs} fanout runs, changes drained per run {drained}, "
              f"longest run {r.longest_run_seconds:.2f} s")
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
