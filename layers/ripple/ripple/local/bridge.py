"""The local wake-up path: LISTEN on the outbox channel and run the fanout handler, as
`aws_lambda.invoke(..., 'Event')` does on AWS. Wake-ups that arrive during a run coalesce into
one more run; a periodic sweep is the backstop, as the scheduled invoke is on AWS.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger("ripple.local.bridge")
CHANNEL = "realtime_outbox"


class Bridge:
    def __init__(self, db_url: str, fanout: Callable[[dict, Any], dict], sweep_seconds: float = 2.0):
        self.db_url = db_url
        self.fanout = fanout
        self.sweep_seconds = sweep_seconds
        self.listening = asyncio.Event()
        self._wanted = asyncio.Event()
        # What the last runs returned (the fanout's counters), for `make dev` logs and the tests.
        self.results: deque[dict] = deque(maxlen=200)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._run())]
        await asyncio.wait_for(self.listening.wait(), timeout=30)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wanted.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.wake()  # anything written while we were not listening
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox listener lost its connection; reconnecting")
                await asyncio.sleep(1)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), timeout=self.sweep_seconds)
                event = {}
            except TimeoutError:
                event = {"sweep": True}  # the scheduled invoke's payload on AWS
            self._wanted.clear()
            try:
                result = await asyncio.to_thread(self.fanout, event, None)
                if result and result.get("changes"):
                    self.results.append(result)
            except Exception:
                log.exception("fanout invocation failed")
