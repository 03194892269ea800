"""API Gateway's 32 KB frame quota, enforced on the raw stream of a local WebSocket.

aiohttp reassembles fragments before handing over a message, so the frame limit cannot be
checked on messages: `FrameMeter` reads each frame's header ahead of aiohttp's parser (a private
hook, `RequestHandler._payload_parser`) and fails the socket with 1009 the way aiohttp does for
an oversize message.
"""
from __future__ import annotations

from typing import Any

from aiohttp import WebSocketError, WSCloseCode


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
