"""The local wake-up path: LISTEN on the outbox channels and run the consumer handlers, as
`aws_lambda.invoke(..., 'Event')` does on AWS — `realtime_outbox` wakes the fanout,
`realtime_notifications` the delivery function. Wake-ups that arrive during a run coalesce
into one more run; a periodic sweep is the backstop, as the scheduled invokes are on AWS.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ripple.local.gateway import LambdaContext, new_id

log = logging.getLogger("ripple.local.bridge")
Handler = Callable[[dict, Any], dict]


@dataclass
class Consumer:
    """One LISTEN channel and the handler it wakes; `results` keeps what the handler returned."""

    channel: str
    handler: Handler
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    results: deque = field(default_factory=lambda: deque(maxlen=200))


class Bridge:
    def __init__(self, db_url: str, handlers: dict[str, Handler], sweep_seconds: float = 2.0):
        self.db_url = db_url
        self.consumers = {channel: Consumer(channel, handler) for channel, handler in handlers.items()}
        self.sweep_seconds = sweep_seconds
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def results(self) -> deque:
        """The fanout's recent non-empty runs (its counters), for `make dev` logs and the tests."""
        return self.consumers["realtime_outbox"].results

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen())]
        self._tasks += [asyncio.create_task(self._run(c)) for c in self.consumers.values()]
        await asyncio.wait_for(self.listening.wait(), timeout=30)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
                    for channel in self.consumers:
                        await conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    for consumer in self.consumers.values():
                        consumer.wanted.set()  # anything written while we were not listening
                    async for notice in conn.notifies():
                        if notice.channel in self.consumers:
                            self.consumers[notice.channel].wanted.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox listener lost its connection; reconnecting")
                await asyncio.sleep(1)

    async def _run(self, consumer: Consumer) -> None:
        while True:
            try:
                await asyncio.wait_for(consumer.wanted.wait(), timeout=self.sweep_seconds)
                event = {}
            except TimeoutError:
                event = {"sweep": True}  # the scheduled invoke's payload on AWS
            consumer.wanted.clear()
            try:
                # A context as Lambda passes one, with the 60 s timeout template.yaml gives both functions.
                context = LambdaContext(f"ripple-local-{consumer.channel}", new_id(), time.monotonic() + 60)
                result = await asyncio.to_thread(consumer.handler, event, context)
                if result and (result.get("changes") or result.get("notifications")):
                    consumer.results.append(result)
            except Exception:
                log.exception("%s handler failed", consumer.channel)
