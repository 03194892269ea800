"""HTTP/1.1 answers as API Gateway and DynamoDB send them: parsing a response out of a buffer,
and `InlineSockets`, requests sent from the calling thread and their answers awaited there.

The parser is a few lines rather than a general HTTP library: the answers are small, the
requests are ours, and what is read is the status, one error header and the body.
"""
from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time

# Error types come as "GoneException" or "GoneException:http://internal.amazon.com/...".
ERROR_TYPE_HEADER = "x-amzn-errortype"
# A response head larger than this is not API Gateway's: the connection is dropped.
MAX_HEAD_BYTES = 64 * 1024


# A response: HTTP status, error type header, whether the connection may carry the next request,
# and the body.
Answer = tuple[int, str, bool, bytes]


class BadResponse(Exception):
    """The server answered something that is not an HTTP/1.1 response."""


def parse_response(buffer: bytearray, eof: bool) -> Answer | None:
    """The complete response at the start of `buffer` as (status, error type, reusable, body), or
    None while more bytes are needed. Raises BadResponse for what is not HTTP/1.x."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES or eof and buffer:
            raise BadResponse("no complete response head")
        return None
    version, status, headers = _head(bytes(buffer[:end]))
    start = end + 4
    if 100 <= status < 200:
        # An interim response (we never ask for one): the final one follows.
        del buffer[:start]
        return parse_response(buffer, eof)
    reusable = headers.get("connection", "").lower() != "close" and version != "HTTP/1.0"
    error_type = headers.get(ERROR_TYPE_HEADER, "").split(":")[0]
    if status in (204, 304):
        return status, error_type, reusable, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _chunked(buffer, start)
        return None if body is None else (status, error_type, reusable, body)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadResponse("bad Content-Length") from None
        if len(buffer) < start + length:
            return None
        return status, error_type, reusable, bytes(buffer[start:start + length])
    # Neither length nor chunks: the body runs to the end of the connection.
    return (status, error_type, False, bytes(buffer[start:])) if eof else None


def _head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """A response head's HTTP version, status and headers (names in lower case)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise BadResponse(lines[0][:80])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return version, int(rest[:3]), headers


def _chunked(buffer: bytearray, at: int) -> bytes | None:
    """The body of a chunked response starting at `at`, or None until its last chunk (and the
    trailers, usually none, up to an empty line) has arrived."""
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        except ValueError:
            raise BadResponse("bad chunk size") from None
        if size == 0:
            return bytes(body) if buffer.find(b"\r\n\r\n", line_end) >= 0 else None
        at = line_end + 2
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at:at + size]
        at += size + 2


class InlineSockets:
    """Blocking keep-alive sockets of the calling thread, to one origin: requests sent all at
    once and their answers awaited on this thread with one poll, no event loop. At most `keep`
    sockets stay open per thread; one idle `idle_seconds`, or readable while idle (the server
    closed it), is not used again. A forked child starts with none of its parent's."""

    def __init__(self, scheme: str, host: str, port: int, *, keep: int = 32, timeout: float = 5.0,
                 idle_seconds: float = 30.0):
        self.host, self.port = host, port
        self.keep, self.timeout, self.idle_seconds = keep, timeout, idle_seconds
        self._ssl = ssl.create_default_context() if scheme == "https" else None
        self._local = threading.local()

    def _kept(self) -> list[tuple[socket.socket, float]]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid, local.kept = os.getpid(), []
        kept: list[tuple[socket.socket, float]] = local.kept
        return kept

    def _take(self, count: int) -> list[socket.socket]:
        kept, expired = self._kept(), time.monotonic() - self.idle_seconds
        taken: list[socket.socket] = []
        while kept and len(taken) < count:
            sock, since = kept.pop()  # the most recently used: the least likely to be closed
            if since > expired:
                taken.append(sock)
            else:
                sock.close()
        if taken:
            poller = select.poll()
            for sock in taken:
                poller.register(sock, select.POLLIN)
            closed = {fd for fd, _ in poller.poll(0)}
            for sock in [s for s in taken if s.fileno() in closed]:
                sock.close()
            taken = [s for s in taken if s.fileno() != -1]
        return taken

    def _connect(self, deadline: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=max(deadline - time.monotonic(), 0.001))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        sock.settimeout(self.timeout)
        return sock

    def exchange_all(self, requests: list[bytes]) -> list[tuple[int, str, bytes]]:
        """Send every request, each on a socket of its own, and return their (status, error
        type, body) in order; status 0 for one that got no answer by the timeout (error type
        TimeoutError), could not connect or send, or was answered with what is not HTTP."""
        results: list[tuple[int, str, bytes]] = [(0, "TimeoutError", b"")] * len(requests)
        deadline = time.monotonic() + self.timeout
        waiting = self._send_all(requests, results, deadline)
        poller = select.poll()
        for _, sock, _ in waiting.values():
            poller.register(sock, select.POLLIN)
        while waiting and (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining * 1000):
                index, sock, buffer = waiting[fd]
                answer = self._answer(sock, buffer)
                if answer is not None:
                    results[index] = answer
                    poller.unregister(fd)
                    del waiting[fd]
        for _, sock, _ in waiting.values():
            sock.close()  # no answer in time: its result stays TimeoutError
        return results

    def _send_all(self, requests: list[bytes], results: list[tuple[int, str, bytes]], deadline: float
                  ) -> dict[int, tuple[int, socket.socket, bytearray]]:
        """Send each request on a kept socket or a new one: the sockets awaiting an answer, by
        file descriptor, with the request's index; a request that could not go is noted in
        `results`."""
        spare = self._take(len(requests))
        waiting: dict[int, tuple[int, socket.socket, bytearray]] = {}
        for index, request in enumerate(requests):
            sock = None
            try:
                sock = spare.pop() if spare else self._connect(deadline)
                sock.sendall(request)
            except (OSError, ValueError) as exc:
                results[index] = (0, type(exc).__name__, b"")
                if sock is not None:
                    sock.close()
                continue
            waiting[sock.fileno()] = (index, sock, bytearray())
        return waiting

    def _answer(self, sock: socket.socket, buffer: bytearray) -> tuple[int, str, bytes] | None:
        """Read from a readable socket: its answer's (status, error type, body) once complete
        (the socket kept for the next round when it may carry one), None while more is to come."""
        try:
            answer = _read_some(sock, buffer)
        except (OSError, BadResponse) as exc:
            sock.close()
            return 0, type(exc).__name__, b""
        if answer is None:
            return None
        status, error_type, reusable, body = answer
        kept = self._kept()
        if reusable and len(kept) < self.keep:
            kept.append((sock, time.monotonic()))
        else:
            sock.close()
        return status, error_type, body

    def close(self) -> None:
        """Close this thread's kept sockets."""
        kept = self._kept()
        while kept:
            kept.pop()[0].close()


def _read_some(sock: socket.socket, buffer: bytearray) -> Answer | None:
    """Read what a readable socket holds (and what TLS has already decrypted) into `buffer`:
    the whole answer once it is there, else None. Raises ConnectionResetError if the server
    closed before answering, BadResponse for what is not HTTP."""
    chunk = sock.recv(65536)
    if not chunk:
        answer = parse_response(buffer, eof=True)
        if answer is None:
            raise ConnectionResetError("connection closed before the response")
        return answer[0], answer[1], False, answer[3]
    buffer += chunk
    while isinstance(sock, ssl.SSLSocket) and sock.pending():
        buffer += sock.recv(sock.pending())
    return parse_response(buffer, eof=False)

