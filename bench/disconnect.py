"""Disconnect benchmark: how long the local stack takes to run `$disconnect` for N sockets that
close at once.

For each socket count N the script opens N WebSocket connections to the local stack's gateway,
joins each to a channel with one INSERT binding (as `bench/fanout.py` does), then closes them all
together and measures:

- the time from the close until the gateway has run every `$disconnect` handler;
- the time until DynamoDB holds no connection or binding row of them;
- how many `$disconnect` handlers ran at the same time at most, and how long each took.

The handlers are counted by wrapping the `$disconnect` route of the stack's gateway, in this
process. Everything runs on one machine (Postgres, moto, the gateway in this process; the
clients in a second one), so the seconds are those of the local stack, not of AWS.

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/disconnect.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/disconnect.py --sockets 100,500
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field

from fanout import Subscribers, prepare_table
from harness import (
    Clients,
    configure,
    counts,
    latency_cells,
    local_stack,
    print_header,
    wait_for_cleanup,
)


class DisconnectLog:
    """Wraps the gateway's `$disconnect` handler: how many ran, how many at once, how long each."""

    def __init__(self, handler):
        self.handler = handler
        self.lock = threading.Lock()
        self.done = 0
        self.running = 0
        self.peak = 0
        self.durations_ms: list[float] = []

    def __call__(self, event, context):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        started = time.monotonic()
        try:
            return self.handler(event, context)
        finally:
            with self.lock:
                self.running -= 1
                self.done += 1
                self.durations_ms.append((time.monotonic() - started) * 1000)

    def reset(self) -> None:
        with self.lock:
            self.done = self.peak = 0
            self.durations_ms = []

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.done < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.done >= count


@dataclass
class Result:
    sockets: int
    joined: int = 0
    handled: int = 0
    handled_seconds: float = 0.0
    cleaned_seconds: float = 0.0
    rows_left: int = 0
    peak: int = 0
    durations_ms: list[float] = field(default_factory=list)


def run_round(stack, clients: Clients, log: DisconnectLog, args, count: int) -> Result:
    result = Result(sockets=count)
    opened = clients.call("open", count=count, eq=False, concurrency=args.concurrency)
    result.joined = opened["joined"]
    if opened["failed"]:
        print(f"  {opened['failed']} of {count} sockets failed to join, e.g. {opened['failures']}",
              file=sys.stderr)
    log.reset()
    started = time.monotonic()
    clients.call("close")
    log.wait_for(result.joined, args.timeout)
    result.handled_seconds = time.monotonic() - started
    result.handled = log.done
    result.rows_left = wait_for_cleanup(stack.aws_url, timeout=args.timeout)
    result.cleaned_seconds = time.monotonic() - started
    result.peak = log.peak
    result.durations_ms = sorted(log.durations_ms)
    return result


def render(results: list[Result]) -> str:
    header = ("| sockets | joined | $disconnect handled | all handled after s | rows gone after s "
              "| handlers at once (peak) | handler p50 ms | p95 ms | p99 ms |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        gone = f"{r.cleaned_seconds:.1f}" + (f" ({r.rows_left} left)" if r.rows_left else "")
        lines.append(f"| {r.sockets} | {r.joined} | {r.handled} | {r.handled_seconds:.1f} | {gone} "
                     f"| {r.peak} | {latency_cells(r.durations_ms)} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", dest="counts", type=counts, default="100,500,2000",
                        help="comma-separated socket counts, one round each (default: 100,500,2000)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="sockets connecting and joining at once (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for $disconnect instead of the gateway's own pool (default: "
                             "ripple.local.lambdas.DISCONNECT_THREADS), to compare pool sizes")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up waiting for the handlers after this many seconds "
                             "(default: %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure()
    from ripple.local.lambdas import DISCONNECT_THREADS

    threads = DISCONNECT_THREADS if args.threads is None else args.threads
    print_header(f"N sockets, each joined to one postgres_changes channel, closed at once; "
                 f"{threads} threads for $disconnect")
    results: list[Result] = []
    started = time.monotonic()
    # The gateway's $disconnect route is wrapped in this process, so the gateway runs here.
    with local_stack(gateway_process=False) as stack:
        clients = None
        try:
            prepare_table(stack.db_url)
            if args.threads is not None:
                from ripple.local.lambdas import Invoker

                stack.gateway.invoker.shutdown()
                stack.gateway.invoker = Invoker(disconnect_threads=args.threads)
            log = DisconnectLog(stack.gateway.routes.disconnect)
            stack.gateway.routes.disconnect = log
            clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Subscribers)
            for count in args.counts:
                print(f"  {count} sockets ...", file=sys.stderr, flush=True)
                results.append(run_round(stack, clients, log, args, count))
        except KeyboardInterrupt:
            print("interrupted; stopping the stack", file=sys.stderr)
        finally:
            if clients is not None:
                clients.stop()
    print()
    print(render(results))
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
