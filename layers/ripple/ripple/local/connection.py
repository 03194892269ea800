"""One accepted WebSocket connection of the local gateway: what events and GetConnection report
about it, why it ended, and its outgoing side.

Outgoing frames go into a bounded buffer that a writer task per connection drains in order, so
a post is answered once its frame is queued and a client that stops reading holds up nobody but
itself. When a post would take the buffer past `Limits.send_buffer_bytes` or
`Limits.send_buffer_frames`, the connection ends with 1008 ("Policy Violation", RFC 6455's code
when no more specific one applies; API Gateway does not document a code for a slow reader) and
reason "Slow reader: send buffer full". A close frame cannot reach a client that does not read,
so the TCP link is dropped at once; `$disconnect` reports the 1008.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, web

from ripple.local.lambdas import now_ms

# How long a closing socket waits for its queued frames to go out, and then for the client's
# close frame, before the TCP link is dropped.
CLOSE_HANDSHAKE_SECONDS = 2.0
SLOW_READER_CODE = 1008
SLOW_READER_REASON = "Slow reader: send buffer full"

_CLOSE_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1003: "Unsupported data",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1009: "Message too big",
}


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas, and the local send buffer; tests shrink them to see each
    one trip.

    API Gateway publishes no send-buffer size: the defaults hold any burst a reading client can
    fall behind on (on top of the kernel's socket buffers) and bound a stuck one's memory.
    """

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 600.0
    max_connection_seconds: float = 7200.0
    send_buffer_bytes: int = 8 * 1024 * 1024
    send_buffer_frames: int = 10_000


class SendBuffer:
    """Frames waiting to be written, oldest first, within a byte and a frame budget."""

    def __init__(self, max_bytes: int, max_frames: int):
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self.frames: deque[bytes] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.frames)

    def offer(self, data: bytes) -> bool:
        """Queue `data` at the back; False, leaving the buffer as it was, if it does not fit."""
        if len(self.frames) >= self.max_frames or self.bytes + len(data) > self.max_bytes:
            return False
        self.frames.append(data)
        self.bytes += len(data)
        return True

    def peek(self) -> bytes:
        """The oldest frame; it keeps its place in the budget until `pop` once it is written."""
        return self.frames[0]

    def pop(self) -> None:
        self.bytes -= len(self.frames.popleft())


class FrameMeter:
    """Reads client frame headers off the raw stream, ahead of aiohttp's WebSocket parser,
    and fails the socket with 1009 at the first data frame whose payload exceeds `limit`.

    It stands in for the parser on the connection's protocol and forwards every byte to it;
    only the headers are read here, payloads are skipped by length.
    """

    def __init__(self, parser: Any, queue: Any, limit: int):
        self.parser = parser
        self.queue = queue
        self.limit = limit
        self.header = bytearray()  # a header split across reads
        self.skip = 0  # payload bytes of the current frame still to come
        self.failed = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.failed:
            return True, b""
        if self._oversize(data):
            self.failed = True
            self.queue.set_exception(WebSocketError(
                WSCloseCode.MESSAGE_TOO_BIG, f"Frame exceeds the {self.limit}-byte frame quota"))
            return True, b""
        return self.parser.feed_data(data)

    def feed_eof(self) -> None:
        self.parser.feed_eof()

    def _oversize(self, data: bytes) -> bool:
        at, end = 0, len(data)
        while at < end:
            if self.skip:
                step = min(self.skip, end - at)
                self.skip -= step
                at += step
                continue
            self.header.append(data[at])
            at += 1
            if len(self.header) < 2:
                continue
            flag = self.header[1] & 0x7F
            need = 2 + (2 if flag == 126 else 8 if flag == 127 else 0) + (4 if self.header[1] & 0x80 else 0)
            if len(self.header) < need:
                continue
            length = (int.from_bytes(self.header[2:4], "big") if flag == 126
                      else int.from_bytes(self.header[2:10], "big") if flag == 127 else flag)
            opcode = self.header[0] & 0x0F
            self.header.clear()
            if opcode in (0x0, 0x1, 0x2) and length > self.limit:
                return True
            self.skip = length
        return False


class Connection:
    """One accepted socket: its identity and times, why it ended, and its outgoing frames."""

    def __init__(self, connection_id: str, *, source_ip: str, user_agent: str, domain: str,
                 limits: Limits = Limits()):
        self.id = connection_id
        self.source_ip = source_ip
        self.user_agent = user_agent
        self.domain = domain
        self.connected_at = now_ms()
        self.last_active_at = self.connected_at
        self.opened = time.monotonic()
        self.active = self.opened
        self.ws: web.WebSocketResponse | None = None
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""
        self.finished = asyncio.Event()
        self.outbox = SendBuffer(limits.send_buffer_bytes, limits.send_buffer_frames)
        self._queued = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._writer: asyncio.Task | None = None
        self._closing: asyncio.Task | None = None

    @property
    def gone(self) -> bool:
        """True once the connection started closing for any reason."""
        return self.close_code is not None

    def touch(self) -> None:
        self.active = time.monotonic()
        self.last_active_at = now_ms()

    def ended(self, code: int, reason: str | None = None) -> None:
        """Record why the connection ends; the first cause wins."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = _CLOSE_REASONS.get(code, "") if reason is None else reason

    def opened_on(self, transport: asyncio.Transport | None) -> None:
        """The handshake is done: start writing the frames queued so far, and any later ones."""
        self._transport = transport
        self._writer = asyncio.create_task(self._write())

    def send(self, data: bytes) -> bool:
        """Queue `data` for the client as a text frame (binary if it is not UTF-8). False if the
        connection is gone, or is now closed because the frame does not fit in its buffer."""
        if self.gone:
            return False
        if not self.outbox.offer(data):
            self.close(SLOW_READER_CODE, SLOW_READER_REASON, flush=False)
            return False
        self._queued.set()
        self.touch()  # API Gateway counts posts as activity
        return True

    def close(self, code: int, reason: str | None = None, *, flush: bool = True) -> asyncio.Future:
        """End the connection with `code`: the queued frames go first when `flush` (for at most
        `CLOSE_HANDSHAKE_SECONDS`), then the close frame. The reader notices and the gateway
        runs $disconnect. Await the result to wait for the close; every caller shares one."""
        self.ended(code, reason)
        if self._closing is None:
            if self._writer is None:  # not open yet: the upgrade closes it once it is
                done: asyncio.Future = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
            self._closing = asyncio.create_task(self._shut(flush))
        return self._closing

    async def release(self) -> None:
        """The socket is closed: stop writing, dropping what is still queued."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    async def _write(self) -> None:
        """Write queued frames in order until cancelled, or until the queue is empty once the
        connection has ended."""
        ws = self.ws
        assert ws is not None
        while True:
            if not self.outbox:
                if self.gone:
                    return
                self._queued.clear()
                await self._queued.wait()
                continue
            data = self.outbox.peek()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            try:
                await (ws.send_bytes(data) if text is None else ws.send_str(text))
            except ConnectionError:
                self.ended(1006)  # the link dropped: later posts are answered 410
                return
            self.outbox.pop()
            self.touch()

    async def _shut(self, flush: bool) -> None:
        ws, writer = self.ws, self._writer
        assert ws is not None and writer is not None
        self._queued.set()  # wakes the writer so it sees the connection has ended
        if flush:
            await asyncio.wait({writer}, timeout=CLOSE_HANDSHAKE_SECONDS)
        if not writer.done():
            # Frames still queued or stuck in a write: the client is not reading, and a close
            # frame would wait behind them forever.
            writer.cancel()
            self._drop_link()
            return
        try:
            # aiohttp waits up to its own timeout (CLOSE_HANDSHAKE_SECONDS) for the reply.
            await asyncio.wait_for(ws.close(code=self.close_code or 1000,
                                            message=self.close_reason.encode()),
                                   2 * CLOSE_HANDSHAKE_SECONDS)
        except TimeoutError:
            pass
        finally:
            self._drop_link()

    def _drop_link(self) -> None:
        """Drop the TCP link unless it closed cleanly (with nothing left unwritten)."""
        transport = self._transport
        if transport is not None and (not transport.is_closing() or transport.get_write_buffer_size()):
            transport.abort()
