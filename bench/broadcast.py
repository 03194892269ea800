"""Broadcast benchmark: what one message to a room costs as the room grows.

For each room size N the script opens N raw WebSocket connections to the local stack's gateway,
joins each to `realtime:bench-room` (`broadcast: {self: false}`), joins one more connection as
the sender, and has the sender send `--messages` broadcasts (V1 text frames, event `tick`,
payload `{seq, sent}`) at a steady pace, then `--burst` more back to back. It measures:

- deliveries received against expected (messages x N), and latency from the sender's
  `send` to the frame arriving at a receiver (p50/p95/p99; both ends in the clients' process);
- deliveries per second of the paced messages, from the first send to the last arrival;
- the sustained rate: the burst sent as fast as the socket takes it, so the room runs at
  whatever pace the router accepts (messages the rate limit refuses are counted, not expected);
  messages and deliveries per second from the burst's first send to its last arrival;
- per message: the router's DynamoDB requests (`ripple.store.store().calls`, and by operation
  from a counting wrapper around that store's client), the read units the Queries consumed
  (strongly consistent, 4 KB each, from the approximate size of the items returned) and
  `PostToConnection` calls (`ripple.gateway.connections_api().posts`), read before the first
  send and after the last delivery, while nothing else uses them.

The router answers a broadcast with one rate-limit UpdateItem on the sender's connection (two
when a new one-second window starts), one Query for the room's members and one post per member
but the sender: the request counts stay flat as N grows, the Query's size and the posts do not.

Everything runs on one machine, as for bench/fanout.py; the request counts carry over to AWS,
the latencies and rates are those of the local stack.

Run it from the repository root:

    PYTHONPATH=layers/ripple .venv/bin/python bench/broadcast.py
    PYTHONPATH=layers/ripple .venv/bin/python bench/broadcast.py --members 10,100 --messages 20 --burst 20
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from harness import (
    Clients,
    add_round_options,
    configure,
    latency_cells,
    local_stack,
    print_header,
    wait_for_cleanup,
)

TOPIC = "realtime:bench-room"
EVENT = "tick"
JOIN = json.dumps({"topic": TOPIC, "event": "phx_join", "ref": "1", "join_ref": "1",
                   "payload": {"config": {"broadcast": {"self": False, "ack": False},
                                          "presence": {"key": ""}, "postgres_changes": []}}})


# -- the clients' process ------------------------------------------------------------------------

def _tick(seq: int, sent: float) -> str:
    return json.dumps({"topic": TOPIC, "event": "broadcast", "ref": str(seq + 2), "join_ref": "1",
                       "payload": {"type": "broadcast", "event": EVENT,
                                   "payload": {"seq": seq, "sent": sent}}})


class Room:
    """N receivers and one sender in one event loop; each receiver records
    (receiver, seq, sent, arrival time) per broadcast.

    The clients' party of `harness.Clients`: its coroutines are the parent's commands.
    """

    def __init__(self, url: str):
        self.url = url
        self.sockets: list = []
        self.readers: list[asyncio.Task] = []
        self.sender = None
        self.arrivals: list[tuple[int, int, float, float]] = []
        self.sender_frames: list[str] = []  # what came back to the sender: errors, echoes
        self.other_frames = 0
        self.progress = asyncio.Event()

    async def open(self, count: int, concurrency: int) -> dict:
        """Connect and join `count` receivers, `concurrency` at a time, then the sender."""
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(index: int) -> None:
            async with gate:
                try:
                    ws = await self._join()
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
            self.sockets.append(ws)
            self.readers.append(asyncio.create_task(self._read(index, ws)))

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        joined = len(self.sockets)
        try:
            self.sender = await self._join()
            self.readers.append(asyncio.create_task(self._read_sender(self.sender)))
        except Exception as exc:
            failures.append(f"sender: {type(exc).__name__}: {exc}")
        return {"joined": joined, "sender": self.sender is not None,
                "seconds": time.monotonic() - started, "failures": failures[:5],
                "failed": len(failures)}

    async def _join(self):
        from websockets.asyncio.client import connect

        ws = await connect(self.url, open_timeout=120, ping_interval=None, close_timeout=10,
                           max_queue=None)
        try:
            await ws.send(JOIN)
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
                if msg.get("event") == "phx_reply" and msg.get("ref") == "1":
                    if msg["payload"].get("status") != "ok":
                        raise RuntimeError(f"join refused: {msg['payload']}")
                    return ws
        except BaseException:
            await ws.close()
            raise

    async def _read(self, index: int, ws) -> None:
        try:
            async for raw in ws:
                arrived = time.time()
                msg = json.loads(raw)
                if msg.get("event") == "broadcast":
                    tick = msg["payload"]["payload"]
                    self.arrivals.append((index, int(tick["seq"]), float(tick["sent"]), arrived))
                    self.progress.set()
                else:
                    self.other_frames += 1
        except Exception:
            pass  # closed by us or by the gateway; the parent counts what is missing

    async def _read_sender(self, ws) -> None:
        try:
            async for raw in ws:
                self.sender_frames.append(raw if isinstance(raw, str) else repr(raw))
        except Exception:
            pass

    async def send(self, messages: int, interval: float) -> dict:
        """Send `messages` broadcasts, one every `interval` seconds; returns when the last left,
        or with how many did and why not the rest if the socket closed."""
        start, sent, error = time.monotonic(), 0, None
        try:
            for seq in range(messages):
                await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))
                await self.sender.send(_tick(seq, time.time()))
                sent += 1
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        return {"sent": sent, "seconds": time.monotonic() - start, "error": error}

    async def collect(self, expected: int, stall_seconds: float) -> dict:
        """Wait for `expected` arrivals, giving up after `stall_seconds` without a new one."""
        while len(self.arrivals) < expected:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), timeout=stall_seconds)
            except TimeoutError:
                break
        return {"arrivals": list(self.arrivals), "other_frames": self.other_frames,
                "sender_frames": list(self.sender_frames)}

    async def reset(self) -> None:
        """Forget what arrived so far (between the paced messages and the burst)."""
        self.arrivals, self.sender_frames, self.other_frames = [], [], 0

    async def close(self) -> None:
        sockets = self.sockets + ([self.sender] if self.sender is not None else [])
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.sockets, self.readers, self.sender = [], [], None
        self.arrivals, self.sender_frames, self.other_frames = [], [], 0


# -- the server's side ---------------------------------------------------------------------------

def item_bytes(item: dict) -> int:
    """DynamoDB's size of an item in its wire format: names plus values (numbers approximated)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        (kind, v), = value.items()
        if kind == "S":
            size += len(v.encode())
        elif kind == "N":
            size += math.ceil(len(v.lstrip("-").replace(".", "")) / 2) + 1
        elif kind in ("BOOL", "NULL"):
            size += 1
        elif kind == "SS":
            size += sum(len(s.encode()) for s in v)
        else:
            size += len(json.dumps(v))
    return size


class CountingClient:
    """Wraps the router's boto3 DynamoDB client: requests by operation, and for Queries the
    items returned and the read units a strongly consistent Query of that size consumes."""

    OPERATIONS = frozenset({"query", "get_item", "put_item", "update_item", "delete_item",
                            "batch_write_item", "scan"})

    def __init__(self, client):
        self._client = client
        self.requests: Counter[str] = Counter()
        self.items_read = 0
        self.read_units = 0

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name not in self.OPERATIONS:
            return attr

        def call(**kwargs):
            self.requests[name] += 1
            response = attr(**kwargs)
            if name == "query":
                items = response.get("Items", ())
                self.items_read += len(items)
                self.read_units += max(1, math.ceil(sum(map(item_bytes, items)) / 4096))
            return response

        return call


@dataclass
class Counters:
    """The router's cost counters, read from the shared singletons in this process."""

    dynamodb: int = 0
    queries: int = 0
    updates: int = 0
    items_read: int = 0
    read_units: int = 0
    posts: int = 0

    @classmethod
    def now(cls) -> Counters:
        from ripple.gateway import connections_api
        from ripple.store import store

        client = store().client
        return cls(store().calls, client.requests["query"], client.requests["update_item"],
                   client.items_read, client.read_units, connections_api().posts)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(a - b for a, b in zip(vars(self).values(), vars(other).values())))


def wait_until_quiet(quiet: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the router's counters have not moved for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = Counters.now(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = Counters.now()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


@dataclass
class Burst:
    """The sustained part of a round: messages sent back to back."""

    sent: int = 0
    refused: int = 0  # answered MessagePerSecondRateLimitReached
    expected: int = 0
    received: int = 0
    span_seconds: float = 0.0  # first send to last arrival

    @property
    def messages_per_second(self) -> float:
        """Whole-room messages: deliveries over the members they went to."""
        members = self.expected / max(self.sent - self.refused, 1)
        return self.received / members / self.span_seconds if self.span_seconds and members else 0.0

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.span_seconds if self.span_seconds else 0.0


def run_burst(clients: Clients, args, joined: int) -> Burst:
    """Send `--burst` broadcasts back to back and time their deliveries."""
    clients.call("reset")
    wait_until_quiet()
    burst = Burst()
    sent = clients.call("send", messages=args.burst, interval=0.0)
    burst.sent = sent["sent"]
    if sent["error"]:
        print(f"  the burst stopped after {sent['sent']} of {args.burst} messages: {sent['error']}",
              file=sys.stderr)
    # A refusal is the sender's only reply (no ack): wait for the accepted ones to arrive.
    collected = clients.call("collect", expected=burst.sent * joined, stall_seconds=args.timeout)
    burst.refused = sum("RateLimitReached" in frame for frame in collected["sender_frames"])
    burst.expected = (burst.sent - burst.refused) * joined
    seen: set[tuple[int, int]] = set()
    first_sent, last_arrival = math.inf, 0.0
    for index, seq, sent_at, arrived in collected["arrivals"]:
        seen.add((index, seq))
        first_sent, last_arrival = min(first_sent, sent_at), max(last_arrival, arrived)
    burst.received = len(seen)
    if seen:
        burst.span_seconds = last_arrival - first_sent
    return burst


@dataclass
class Result:
    members: int
    messages: int
    joined: int = 0
    join_seconds: float = 0.0
    expected: int = 0
    received: int = 0
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    span_seconds: float = 0.0
    send_seconds: float = 0.0
    sender_frames: list[str] = field(default_factory=list)
    cost: Counters = field(default_factory=Counters)
    burst: Burst | None = None
    cleanup_seconds: float = 0.0  # until $disconnect removed every row of the round
    round_seconds: float = 0.0  # joins, sends, deliveries and cleanup


def run_round(stack, clients: Clients, args, count: int) -> Result:
    started = time.monotonic()
    result = Result(members=count, messages=0)  # messages: those actually sent
    opened = clients.call("open", count=count, concurrency=args.concurrency)
    result.joined, result.join_seconds = opened["joined"], opened["seconds"]
    if opened["failed"]:
        print(f"  {opened['failed']} of {count} members and the sender failed to join, "
              f"e.g. {opened['failures']}", file=sys.stderr)
    if opened["sender"]:
        wait_until_quiet()
        before = Counters.now()
        sent = clients.call("send", messages=args.messages, interval=args.interval_ms / 1000)
        result.messages, result.send_seconds = sent["sent"], sent["seconds"]
        if sent["error"]:
            print(f"  the sender stopped after {sent['sent']} of {args.messages} messages: "
                  f"{sent['error']}", file=sys.stderr)
        # Only the members that joined can receive what was sent; the rest is reported missing.
        result.expected = sent["sent"] * result.joined
        collected = clients.call("collect", expected=result.expected,
                                 stall_seconds=args.timeout)
        wait_until_quiet()
        result.cost = Counters.now() - before
        if collected["other_frames"]:
            print(f"  {collected['other_frames']} frames other than broadcasts reached members",
                  file=sys.stderr)
        result.sender_frames = collected["sender_frames"]

        seen: set[tuple[int, int]] = set()
        first_sent, last_arrival = math.inf, 0.0
        for index, seq, sent_at, arrived in collected["arrivals"]:
            if (index, seq) in seen:
                result.duplicates += 1
                continue
            seen.add((index, seq))
            result.latencies_ms.append((arrived - sent_at) * 1000)
            first_sent, last_arrival = min(first_sent, sent_at), max(last_arrival, arrived)
        result.received = len(seen)
        result.latencies_ms.sort()
        if seen:
            result.span_seconds = last_arrival - first_sent
        if args.burst:
            result.burst = run_burst(clients, args, result.joined)

    closing = time.monotonic()
    clients.call("close")
    left = wait_for_cleanup(stack.aws_url)
    result.cleanup_seconds = time.monotonic() - closing
    if left:
        print(f"  $disconnect left {left} connection/membership rows behind", file=sys.stderr)
    result.round_seconds = time.monotonic() - started
    return result


def render(results: list[Result]) -> str:
    header = ("| members | messages | delivered / expected | p50 ms | p95 ms | p99 ms "
              "| deliveries/s | DynamoDB calls / message | Query / message "
              "| UpdateItem / message | items read / message | read units / message "
              "| PostToConnection / message | burst delivered / expected | sustained messages/s "
              "| sustained deliveries/s |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        per, c = max(r.messages, 1), r.cost
        rate = r.received / r.span_seconds if r.span_seconds else 0.0
        delivered = f"{r.received} / {r.expected}"
        if r.duplicates:
            delivered += f" ({r.duplicates} duplicate)"
        lines.append(
            f"| {r.members} | {r.messages} | {delivered} "
            f"| {latency_cells(r.latencies_ms)} | {rate:.0f} "
            f"| {c.dynamodb / per:.2f} | {c.queries / per:.2f} | {c.updates / per:.2f} "
            f"| {c.items_read / per:.0f} | {c.read_units / per:.1f} | {c.posts / per:.2f} "
            + (f"| {r.burst.received} / {r.burst.expected} | {r.burst.messages_per_second:.1f} "
               f"| {r.burst.deliveries_per_second:.0f} |" if r.burst else "| - | - | - |"))
    return "\n".join(lines)


def describe(r: Result) -> str:
    back = (f"; the sender got {len(r.sender_frames)} frames back, e.g. {r.sender_frames[0][:120]}"
            if r.sender_frames else "")
    burst = (f"; burst of {r.burst.sent} ({r.burst.refused} refused by the rate limit), last "
             f"delivery {r.burst.span_seconds:.1f} s after its first send" if r.burst else "")
    return (f"{r.members}: {r.joined} joined (and the sender) in {r.join_seconds:.1f} s; "
            f"{r.messages} sent in {r.send_seconds:.1f} s, last delivery "
            f"{r.span_seconds:.1f} s after the first send{burst}; cleanup {r.cleanup_seconds:.1f} s, "
            f"round {r.round_seconds:.0f} s{back}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20,
                        help="broadcasts the sender sends per round (default: %(default)s)")
    parser.add_argument("--burst", type=int, default=50,
                        help="broadcasts then sent back to back, for the sustained rate; 0 skips "
                             "(default: %(default)s)")
    add_round_options(parser, sizes="--members",
                      sizes_help="room sizes, one round each; each member is its own WebSocket connection",
                      interval_ms=100.0, who="members",
                      interval_help="pace between sends; the router allows 100 messages per "
                                    "second per connection")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configure()

    pacing = f"one every {args.interval_ms:g} ms" if args.interval_ms else "back to back"
    print_header(f"{args.messages} broadcasts per round to {TOPIC} (self: false) from one extra "
                 f"sender connection, {pacing}, then {args.burst} back to back; "
                 f"latency = arrival at a member - send")

    results: list[Result] = []
    started = time.monotonic()
    # The router's counters are read in this process, so its gateway runs here too.
    with local_stack(gateway_process=False) as stack:
        clients = None
        try:
            from ripple.store import store

            # Before any client connects, so every handler sees the wrapped client.
            store().client = CountingClient(store().client)
            clients = Clients(f"{stack.ws_url}?apikey={stack.key('anon')}&vsn=1.0.0", Room)
            for count in args.counts:
                print(f"  {count} members ...", file=sys.stderr, flush=True)
                results.append(run_round(stack, clients, args, count))
        except KeyboardInterrupt:
            print("interrupted; stopping the stack", file=sys.stderr)
        finally:
            if clients is not None:
                clients.stop()
    print()
    print(render(results))
    print()
    for r in results:
        print(describe(r))
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
