"""One accepted socket of the local gateway: what API Gateway's events and GetConnection report
about it, its inbox for `$default`, and the order of what is sent to it."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

_CLOSE_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1003: "Unsupported data",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1009: "Message too big",
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Connection:
    """One accepted socket: what events and GetConnection report about it, and its send order."""

    def __init__(self, connection_id: str, *, source_ip: str, user_agent: str, domain: str):
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
        # FIFO lock: posts reach the client in the order they arrived, never interleaved.
        self.send_lock = asyncio.Lock()

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

    async def send(self, data: bytes) -> bool:
        """Send `data` as a text frame (binary if it is not UTF-8); False if the socket is gone."""
        async with self.send_lock:
            ws = self.ws
            if self.gone or ws is None or not ws.prepared or ws.closed:
                return False
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            try:
                await (ws.send_bytes(data) if text is None else ws.send_str(text))
            except ConnectionError:
                return False
            self.touch()
            return True

    async def close(self, code: int, reason: str | None = None) -> None:
        """Close the socket with `code`; the reader notices and the gateway runs $disconnect."""
        self.ended(code, reason)
        if self.ws is not None and self.ws.prepared:
            await self.ws.close(code=code, message=self.close_reason.encode())
