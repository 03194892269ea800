"""Sharded posting benchmark: one wide round of posts from the drainer itself (K = 1) or split
across K poster processes (`ripple.shards.process.ProcessTransport`), against a local
`@connections` sink.

The sink runs in a process of its own (a minimal keep-alive HTTP/1.1 server answering 200), so
what is measured is the posting side: `ShardedApi.deliver` of N connections x F frames, signed
and sent by the lean poster. Per K it prints deliveries/s (wall clock over the measured rounds)
and CPU µs per delivery of the posting side (the drainer process plus its workers, from their
CPU times in /proc), with the sink's CPU apart. Worker start-up is left out: a warm-up round starts them.

    PYTHONPATH=layers/ripple .venv/bin/python bench/shards.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/shards.py --connections 2000 --frames 5 --shards 1,2,3
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ripple.gateway import Delivery, lean_poster
from ripple.shards.api import ShardedApi
from ripple.shards.process import ProcessTransport

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


# -- the sink's process --------------------------------------------------------------------------

async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _sink() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    os._exit(0)  # the parent is done: no need to wind down its open connections


# -- the posting side ----------------------------------------------------------------------------

def _cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(connections: int, frames: int, seq: int) -> list[Delivery]:
    return [Delivery(f"conn-{c:06d}=", [json.dumps({"event": "postgres_changes", "topic": "realtime:bench",
                                                    "payload": {"n": c, "seq": seq * frames + f, "pad": "x" * 120}})
                                        for f in range(frames)])
            for c in range(connections)]


def measure(url: str, sink: int, shards: int, connections: int, frames: int, rounds: int) -> dict:
    transport = ProcessTransport(shards) if shards > 1 else None
    api = ShardedApi(lean_poster(url), concurrency=192, transport=transport, shards=shards, threshold=1)
    try:
        api.deliver(_round(connections, frames, 0))  # warm: workers started, pools open
        work = [_round(connections, frames, seq) for seq in range(1, rounds + 1)]
        workers = transport.pids if transport else []
        me = os.getpid()
        cpu0, sink0, workers0 = _cpu(me), _cpu(sink), [_cpu(w) for w in workers]
        started, delivered = time.perf_counter(), 0
        for deliveries in work:
            outcome = api.deliver(deliveries)
            delivered += outcome.delivered
            assert outcome.owed == [] and outcome.failed == 0 and outcome.gone == [], outcome
        wall = time.perf_counter() - started
        parent = _cpu(me) - cpu0
        worker_cpu = sum(_cpu(w) - c for w, c in zip(workers, workers0))
        return {"K": shards, "posts": delivered, "seconds": wall, "rate": delivered / wall,
                "fanout_us": parent / delivered * 1e6, "workers_us": worker_cpu / delivered * 1e6,
                "total_us": (parent + worker_cpu) / delivered * 1e6,
                "sink_us": (_cpu(sink) - sink0) / delivered * 1e6}
    finally:
        if transport is not None:
            transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=5, help="frames per connection per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--shards", default="1,2", help="comma-separated K values")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(_sink())
        return
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert sink.stdout is not None and sink.stdin is not None
    url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "RIPPLE_CONNECTIONS_ENDPOINT": url})
    print(f"# {os.cpu_count()} CPUs; {args.connections} connections x {args.frames} frames per round, "
          f"{args.rounds} rounds per K; sink {url}")
    print(f"{'K':>2} {'posts':>7} {'posts/s':>9} {'µs/post fanout':>16} {'workers':>8} {'total':>7} {'sink':>6}")
    try:
        for shards in (int(k) for k in args.shards.split(",")):
            row = measure(url, sink.pid, shards, args.connections, args.frames, args.rounds)
            print(f"{row['K']:>2} {row['posts']:>7} {row['rate']:>9.0f} {row['fanout_us']:>16.1f} "
                  f"{row['workers_us']:>8.1f} {row['total_us']:>7.1f} {row['sink_us']:>6.1f}", flush=True)
    finally:
        sink.stdin.close()
        sink.wait(timeout=10)


if __name__ == "__main__":
    main()
