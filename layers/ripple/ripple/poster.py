"""The lean `@connections` client: SigV4-signed HTTP over one aiohttp keep-alive pool.

Requests run on a `BackgroundLoop`, an event loop on a daemon thread of its own, so synchronous
callers (Lambda handlers, the drain) can have hundreds of posts in flight without a thread each.
A request answers (HTTP status, error type); status 0 means it never got an answer (connection
refused or reset, timeout). What a status means for the frame is `ripple.gateway`'s business.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from ripple.aws import Call, observed, report
from ripple.sigv4 import Signer

T = TypeVar("T")

# Error types come as "GoneException" or "GoneException:http://internal.amazon.com/...".
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
OPERATIONS = {"POST": "PostToConnection", "DELETE": "DeleteConnection"}


class BackgroundLoop:
    """An asyncio event loop on a daemon thread; `run(coro)` blocks the calling thread until the
    coroutine finishes there. A forked child starts a loop of its own on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="ripple-poster",
                                                daemon=True)
                self._thread.start()
                self._pid = os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result (or exception), run on the background loop in the caller's
        context (its context variables: the invocation's logging and tracing keys)."""
        loop = self.loop
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop")
        context = contextvars.copy_context()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(coro, context=context)
            task.add_done_callback(lambda done: _settle(result, done))

        loop.call_soon_threadsafe(start)
        return result.result()


def _settle(result: concurrent.futures.Future, task: asyncio.Task) -> None:
    if task.cancelled():
        result.cancel()
    elif (error := task.exception()) is not None:
        result.set_exception(error)
    else:
        result.set_result(task.result())


_background = BackgroundLoop()


def background_loop() -> BackgroundLoop:
    """The process-wide background loop the posters share."""
    return _background


def _host_header(scheme: str, hostname: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    return hostname if port in (None, default) else f"{hostname}:{port}"


class LeanPoster:
    """PostToConnection and DeleteConnection as signed aiohttp requests to `endpoint` (the
    management API URL, stage included: https://{api}.execute-api.{region}.amazonaws.com/{stage}).
    At most `limit` requests are open at once; connections are kept alive and reused."""

    def __init__(self, endpoint: str, signer: Signer, *, limit: int = 256, timeout: float = 5.0):
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.signer = signer
        self.limit = limit
        self.timeout = timeout
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/") + "/@connections/"
        self._host = _host_header(parts.scheme, parts.hostname or "", parts.port)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def path(self, connection_id: str) -> str:
        """The request path of a connection, encoded as botocore encodes it."""
        return self._prefix + quote(connection_id, safe="-._~")

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit,
                                             keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                skip_auto_headers=("User-Agent",), auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar())
            self._session_loop = loop
            atexit.register(self._close_at_exit, self._session, loop)
        return self._session

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]:
        """POST @connections/{id}: (status, error type), status 0 when no answer came."""
        return await self._request("POST", connection_id, data)

    async def delete(self, connection_id: str) -> tuple[int, str]:
        """DELETE @connections/{id}: (status, error type), status 0 when no answer came."""
        return await self._request("DELETE", connection_id, b"")

    async def _request(self, method: str, connection_id: str, body: bytes) -> tuple[int, str]:
        if observed():
            report(Call("execute-api", OPERATIONS[method], {"ConnectionId": connection_id}, self.endpoint))
        session = self._session_here()
        path = self.path(connection_id)
        headers = self.signer.headers(method, self._host, path, body)
        try:
            async with session.request(method, URL(self._origin + path, encoded=True), data=body,
                                       headers=headers) as response:
                # Reading the body hands the connection back to the pool for the next request.
                await response.read()
                if response.status < 300:
                    return response.status, ""
                return response.status, response.headers.get(ERROR_TYPE_HEADER, "").split(":")[0]
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return 0, type(exc).__name__

    @staticmethod
    def _close_at_exit(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
        if session.closed or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=1)
        except Exception:  # noqa: BLE001 - the process is exiting; nothing is left to tell
            pass
