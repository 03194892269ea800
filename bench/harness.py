"""What the benchmarks share: the local stack on free ports, clients in a second process, the
fanout's wake-ups, percentiles and the header every run prints.

A benchmark defines a party: a class whose instance lives in the clients' process and whose
async methods are the commands the parent sends (`open`, `collect`, `close`, ...):

    with local_stack() as stack:
        clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Subscribers)
        opened = clients.call("open", count=100, eq=False, concurrency=50)
        clients.stop()
"""
from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import shlex
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- the clients' process ------------------------------------------------------------------------

async def _serve(pipe, party) -> None:
    while True:
        command, args = await asyncio.to_thread(pipe.recv)
        if command == "stop":
            await party.close()
            return
        pipe.send(await getattr(party, command)(**args) or {})


def clients_process(pipe, url: str, party_type: type) -> None:
    """Entry of the clients' process: obey commands from the pipe until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    asyncio.run(_serve(pipe, party_type(url)))


class Clients:
    """The parent's handle on the clients' process, so the clients' frame parsing does not share
    the server's interpreter lock. `party_type(url)` is built there and runs the commands."""

    def __init__(self, url: str, party_type: type):
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=clients_process, args=(theirs, url, party_type),
                                       daemon=True)
        self.process.start()

    def call(self, command: str, **args) -> dict:
        self.pipe.send((command, args))
        return self.pipe.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.pipe.send(("stop", {}))
                self.process.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


# -- the server's side ---------------------------------------------------------------------------

GATEWAY_PROCESS = "RIPPLE_LOCAL_GATEWAY_PROCESS"


@contextmanager
def local_stack(gateway_process: bool | None = None) -> Iterator:
    """The whole local stack on free ports in a temporary directory, stopped however the block
    ends (including a start that fails halfway).

    The gateway (WebSocket server, `@connections`, the route handlers) runs in a process of its
    own unless `gateway_process` is False or RIPPLE_LOCAL_GATEWAY_PROCESS=0 (`--gateway-in-process`),
    so that what is measured is Ripple's fanout, not its share of one interpreter lock."""
    from ripple.local.stack import Ports, Stack

    if gateway_process is None:
        gateway_process = os.environ.get(GATEWAY_PROCESS, "1").strip() != "0"
    with tempfile.TemporaryDirectory(prefix="ripple-bench-") as state:
        stack = Stack(state_dir=Path(state), ports=Ports(api=0, db=free_port(), mail=0, aws=0),
                      gateway_process=gateway_process)
        try:
            yield stack.start()
        finally:
            try:
                stack.stop()
            except Exception as exc:  # a slow shutdown must not lose the measurements
                print(f"stack did not stop cleanly: {exc!r}", file=sys.stderr)


def watch_fanout(stack) -> WakeLog:
    """Wrap the fanout handler the stack's bridge runs, so every run is seen; the bridge calls
    whatever its `realtime_outbox` consumer holds."""
    consumer = stack.bridge.consumers["realtime_outbox"]
    wakes = WakeLog(consumer.handler)
    consumer.handler = wakes
    return wakes


class WakeLog:
    """Wraps the bridge's fanout handler to keep what each run reported and how long it took."""

    def __init__(self, handler):
        self.handler = handler
        self.runs: list[tuple[float, dict]] = []
        self.running = False

    def __call__(self, event, context):
        self.running = True
        started = time.monotonic()
        try:
            stats = self.handler(event, context)
            self.runs.append((time.monotonic() - started, stats))
            return stats
        finally:
            self.running = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


def wait_for_cleanup(aws_url: str, timeout: float = 120.0) -> int:
    """Wait until $disconnect has removed every connection and binding; returns what is left."""
    import boto3

    from ripple.local.stack import BINDINGS_TABLE, CONNECTIONS_TABLE, REGION
    from ripple.store import REGISTRY_SK
    from ripple.store.warm import VERSION_SK

    ddb = boto3.client("dynamodb", endpoint_url=aws_url, region_name=REGION)

    def left() -> int:
        connections = ddb.scan(TableName=CONNECTIONS_TABLE, Select="COUNT")["Count"]
        # The eq registry and bucket version rows stay by design; only per-connection rows must go.
        bindings = ddb.scan(TableName=BINDINGS_TABLE, Select="COUNT",
                            FilterExpression="sk <> :r AND sk <> :v",
                            ExpressionAttributeValues={":r": {"S": REGISTRY_SK},
                                                       ":v": {"S": VERSION_SK}})["Count"]
        return connections + bindings

    deadline = time.monotonic() + timeout
    while (remaining := left()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return remaining


def configure() -> None:
    """Make `ripple` importable, and quiet the handlers: they log a line per wake-up and per
    connection, and a run's output is its table."""
    import logging

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    sys.path.insert(0, str(ROOT / "layers" / "ripple"))


def print_header(workload: str) -> None:
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}")
    print(f"workload: {workload}", flush=True)


def add_round_options(parser, *, sizes: str, sizes_help: str, interval_ms: float, interval_help: str,
                      who: str) -> None:
    """The options every benchmark shares: the round sizes (`sizes`, e.g. "--members", parsed into
    `args.counts`), pacing, join concurrency and the delivery timeout."""
    parser.add_argument(sizes, dest="counts", type=counts, default="10,100,1000",
                        help=f"comma-separated {sizes_help} (default: 10,100,1000)")
    parser.add_argument("--interval-ms", type=float, default=interval_ms,
                        help=f"{interval_help} (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=50,
                        help=f"{who} connecting and joining at once (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="give up waiting for deliveries after this many seconds without one "
                             "(default: %(default)s)")
    parser.add_argument("--gateway-in-process", action=GatewayInProcess,
                        help="run the gateway and its handlers in the benchmark's process instead "
                             f"of a process of its own (as {GATEWAY_PROCESS}=0 does)")


class GatewayInProcess(argparse.Action):
    """`--gateway-in-process`: sets RIPPLE_LOCAL_GATEWAY_PROCESS=0, which `local_stack()` reads."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[GATEWAY_PROCESS] = "0"
        setattr(namespace, self.dest, True)


def latency_cells(sorted_ms: list[float]) -> str:
    """The p50, p95 and p99 columns of a result row."""
    return " | ".join(f"{percentile(sorted_ms, q):.1f}" for q in (50, 95, 99))


def counts(text: str) -> list[int]:
    """`10,100,1000` as numbers."""
    return [int(c) for c in text.split(",") if c.strip()]
