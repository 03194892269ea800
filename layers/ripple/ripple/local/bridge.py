"""The local wake-up path: LISTEN on the outbox channels and run the consumer handlers, as
`aws_lambda.invoke(..., 'Event')` does on AWS — `realtime_outbox` wakes the fanout,
`realtime_notifications` the delivery function. Wake-ups that arrive during a run coalesce
into one more run; a periodic sweep is the backstop, as the scheduled invokes are on AWS.

The listener and each consumer have a thread of their own, off the gateway's event loop: a
notification wakes its handler directly, however busy the loop is with sockets and posts.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ripple.local.gateway import LambdaContext, new_id

log = logging.getLogger("ripple.local.bridge")
Handler = Callable[[dict, Any], dict]
# How often the listener looks up from its connection to see whether the bridge is stopping.
POLL_SECONDS = 0.5


@dataclass
class Consumer:
    """One LISTEN channel and the handler it wakes; `results` keeps what the handler returned."""

    channel: str
    handler: Handler
    wanted: threading.Event = field(default_factory=threading.Event)
    results: deque = field(default_factory=lambda: deque(maxlen=200))


class Bridge:
    def __init__(self, db_url: str, handlers: dict[str, Handler], sweep_seconds: float = 2.0):
        self.db_url = db_url
        self.consumers = {channel: Consumer(channel, handler) for channel, handler in handlers.items()}
        self.sweep_seconds = sweep_seconds
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def results(self) -> deque:
        """The fanout's recent non-empty runs (its counters), for `make dev` logs and the tests."""
        return self.consumers["realtime_outbox"].results

    async def start(self) -> None:
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._listen, name="ripple-bridge-listen", daemon=True)]
        self._threads += [threading.Thread(target=self._run, args=(c,), name=f"ripple-bridge-{c.channel}",
                                           daemon=True) for c in self.consumers.values()]
        for thread in self._threads:
            thread.start()
        if not await asyncio.to_thread(self.listening.wait, 30):
            raise TimeoutError("the outbox listener did not start listening")

    async def stop(self) -> None:
        self._stopping.set()
        for consumer in self.consumers.values():
            consumer.wanted.set()
        # A run in progress finishes on its own (daemon threads); the listener looks up soon.
        await asyncio.to_thread(self._join, POLL_SECONDS * 4)

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.db_url, autocommit=True) as conn:
                    for channel in self.consumers:
                        conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    for consumer in self.consumers.values():
                        consumer.wanted.set()  # anything written while we were not listening
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=POLL_SECONDS):
                            if notice.channel in self.consumers:
                                self.consumers[notice.channel].wanted.set()
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("outbox listener lost its connection; reconnecting")
                self._stopping.wait(1)

    def _run(self, consumer: Consumer) -> None:
        while True:
            woken = consumer.wanted.wait(timeout=self.sweep_seconds)
            if self._stopping.is_set():
                return
            consumer.wanted.clear()
            event = {} if woken else {"sweep": True}  # the scheduled invoke's payload on AWS
            try:
                # A context as Lambda passes one, with the 60 s timeout template.yaml gives both functions.
                context = LambdaContext(f"ripple-local-{consumer.channel}", new_id(), time.monotonic() + 60)
                result = consumer.handler(event, context)
                if result and (result.get("changes") or result.get("notifications")):
                    consumer.results.append(result)
            except Exception:
                log.exception("%s handler failed", consumer.channel)
