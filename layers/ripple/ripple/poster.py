"""The lean `@connections` client: SigV4-signed HTTP/1.1 over a pool of keep-alive connections.

Requests run on a `BackgroundLoop`, an event loop on a daemon thread of its own, so synchronous
callers (Lambda handlers, the drain) can have hundreds of posts in flight without a thread each.
A request answers (HTTP status, error type); status 0 means it never got an answer (connection
refused or reset, timeout, a response that is not HTTP). What a status means for the frame is
`ripple.gateway`'s business.

The HTTP client is `KeepAlivePool`, a few asyncio protocol callbacks rather than aiohttp: a post
is one small request with an empty answer, and aiohttp's per-request machinery (timers, stream
readers, header multidicts, tracing hooks) cost 5-6x the CPU of the whole exchange here, on the
path every delivery takes.

A small round can skip the loop: `LeanPoster.post_now` sends one request per connection on the
calling thread's own kept-alive sockets and waits for the answers there (`ripple.http1`'s
`InlineSockets`, one poll). For ten posts on an idle process that is about half the CPU of the same posts through
the loop, which pays a wake-up of its thread, a task per connection and a hop back.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import ssl
import threading
import time
from collections.abc import Coroutine
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from ripple.aws import Call, observed, report
from ripple.http1 import MAX_HEAD_BYTES, Answer, BadResponse, InlineSockets, parse_response
from ripple.sigv4 import Signer

T = TypeVar("T")

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


@lru_cache(maxsize=65536)
def _quoted(connection_id: str) -> str:
    # Once per connection, not per post: a connection gets frame after frame.
    return quote(connection_id, safe="-._~")


def _host_header(scheme: str, hostname: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    return hostname if port in (None, default) else f"{hostname}:{port}"


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time; its response resolves
    `waiter`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.close()  # talking while idle: nothing we asked for, never reused
            return
        try:
            answer = parse_response(self.buffer, eof=False)
        except BadResponse as exc:
            self.waiter.set_exception(exc)
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            # A response without a length ends with the connection.
            answer = parse_response(self.buffer, eof=True)
        except BadResponse as error:
            waiter.set_exception(error)
            return
        if answer is not None:
            waiter.set_result(answer)
        else:
            waiter.set_exception(ConnectionResetError("connection closed before the response"))

    async def exchange(self, request: bytes) -> Answer:
        """Send `request` and wait for its whole response."""
        assert self.transport is not None
        self.buffer.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAlivePool:
    """HTTP/1.1 requests to one origin over at most `limit` connections, each reused for request
    after request (one at a time) until the server closes it or it has been idle `idle_seconds`.
    Bound to the event loop it is first used on."""

    def __init__(self, scheme: str, host: str, port: int, *, limit: int = 256, timeout: float = 5.0,
                 idle_seconds: float = 30.0):
        self.scheme, self.host, self.port = scheme, host, port
        self.limit, self.timeout, self.idle_seconds = limit, timeout, idle_seconds
        self._idle: list[_Exchange] = []
        self._slots: asyncio.Semaphore | None = None
        self._ssl = ssl.create_default_context() if scheme == "https" else None

    async def request(self, data: bytes) -> tuple[int, str, bytes]:
        """Send one whole request (head and body) and return (status, error type, body). Raises
        TimeoutError, OSError (refused, reset, TLS) or BadResponse."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots, asyncio.timeout(self.timeout):
            conn = self._reusable() or await self._open()
            try:
                status, error_type, reusable, body = await conn.exchange(data)
            except BaseException:
                conn.close()
                raise
            if reusable and not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return status, error_type, body

    def _reusable(self) -> _Exchange | None:
        expired = time.monotonic() - self.idle_seconds
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be closed
            if not conn.closed and conn.idle_since > expired:
                return conn
            conn.close()
        return None

    async def _open(self) -> _Exchange:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Exchange, self.host, self.port, ssl=self._ssl,
            server_hostname=self.host if self._ssl is not None else None)
        return conn

    def close(self) -> None:
        """Close the idle connections (requests in flight finish on theirs)."""
        while self._idle:
            self._idle.pop().close()


class LeanPoster:
    """PostToConnection and DeleteConnection as signed HTTP/1.1 requests to `endpoint` (the
    management API URL, stage included: https://{api}.execute-api.{region}.amazonaws.com/{stage}).
    At most `limit` requests are open at once; connections are kept alive and reused (for
    `post_now`, up to `inline` per calling thread)."""

    def __init__(self, endpoint: str, signer: Signer, *, limit: int = 256, timeout: float = 5.0,
                 inline: int = 32):
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.signer = signer
        self.limit = limit
        self.timeout = timeout
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/") + "/@connections/"
        self._host = _host_header(parts.scheme, parts.hostname or "", parts.port)
        self._address = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        self._pool: KeepAlivePool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._inline = InlineSockets(*self._address, keep=max(inline, 1), timeout=timeout)

    def path(self, connection_id: str) -> str:
        """The request path of a connection, encoded as botocore encodes it."""
        return self._prefix + _quoted(connection_id)

    def _pool_here(self) -> KeepAlivePool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            scheme, host, port = self._address
            self._pool = KeepAlivePool(scheme, host, port, limit=self.limit, timeout=self.timeout)
            self._pool_loop = loop
        return self._pool

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]:
        """POST @connections/{id}: (status, error type), status 0 when no answer came."""
        return await self._request("POST", connection_id, data)

    async def delete(self, connection_id: str) -> tuple[int, str]:
        """DELETE @connections/{id}: (status, error type), status 0 when no answer came."""
        return await self._request("DELETE", connection_id, b"")

    def post_now(self, posts: list[tuple[str, bytes]]) -> list[tuple[int, str]]:
        """POST each (connection id, body), all at once, on the calling thread's own sockets
        (no event loop; for a small round): their (status, error type) in order, status 0 where
        no answer came. One post per connection: a connection's next frame waits for this one's
        answer."""
        answers = self._inline.exchange_all([self._signed("POST", cid, body) for cid, body in posts])
        return [(status, error_type) for status, error_type, _ in answers]

    def _signed(self, method: str, connection_id: str, body: bytes) -> bytes:
        """The whole request, head and body, signed."""
        if observed():
            report(Call("execute-api", OPERATIONS[method], {"ConnectionId": connection_id}, self.endpoint))
        path = self.path(connection_id)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        head += [f"{name}: {value}" for name, value in
                 self.signer.headers(method, self._host, path, body).items()]
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(head).encode() + body

    async def _request(self, method: str, connection_id: str, body: bytes) -> tuple[int, str]:
        request = self._signed(method, connection_id, body)
        try:
            status, error_type, _ = await self._pool_here().request(request)
            return status, error_type
        except (TimeoutError, OSError, BadResponse) as exc:
            return 0, type(exc).__name__
