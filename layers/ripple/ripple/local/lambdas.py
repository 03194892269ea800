"""The Lambda side of the local gateway: the handler type, the context a handler gets, the
API-Gateway-shaped proxy events of `$connect`, `$default` and `$disconnect`, and the thread
pools handlers run on.

    invoker = Invoker()
    response = await invoker.invoke(handler, connect_event(peer, request, "local"), "connect")
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

Handler = Callable[[dict, Any], dict]

API_ID = "local"
# The Lambda timeout a handler's context reports; API Gateway integrations stop at 29 s.
HANDLER_TIMEOUT_SECONDS = 29.0
# Threads for `$disconnect`, apart from the loop's default pool that `$connect` and `$default`
# share: a crowd of sockets closing together (a network blip, a deploy) must not queue behind a
# handful of threads, nor hold up the other routes. As many as the AWS clients' connection pools
# (`ripple.aws`), which every one of them may use at once.
DISCONNECT_THREADS = 64

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class LambdaContext:
    """The parts of a Lambda context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    deadline: float = field(default_factory=lambda: time.monotonic() + HANDLER_TIMEOUT_SECONDS)
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    log_group_name: str = "/aws/lambda/ripple-local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class Invoker:
    """Runs synchronous handlers in worker threads, so they may block on network IO, including
    calls back into the gateway's own event loop."""

    def __init__(self, disconnect_threads: int = DISCONNECT_THREADS):
        self._disconnect_pool = ThreadPoolExecutor(disconnect_threads,
                                                   thread_name_prefix="ripple-disconnect")

    async def invoke(self, handler: Handler, event: dict, route: str) -> Any:
        """`handler(event, context)` on a worker thread; what it returns or raises."""
        context = LambdaContext(f"ripple-local-{route}", event["requestContext"]["requestId"])
        if route != "disconnect":
            return await asyncio.to_thread(handler, event, context)
        call = functools.partial(contextvars.copy_context().run, handler, event, context)
        return await asyncio.get_running_loop().run_in_executor(self._disconnect_pool, call)

    def shutdown(self) -> None:
        """Let the `$disconnect` threads end once their current handler returns."""
        self._disconnect_pool.shutdown(wait=False)


class Peer(Protocol):
    """What the events say about a connection."""

    id: str
    source_ip: str
    user_agent: str
    domain: str
    connected_at: int
    close_code: int | None
    close_reason: str


def new_id() -> str:
    """An id shaped like API Gateway's connection and request ids, e.g. "JC1dgf9yoAMCK-g="."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(epoch_ms: int) -> str:
    """`epoch_ms` as GetConnection reports times, e.g. "2026-01-01T00:00:00.000Z"."""
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_time(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return f"{at.day:02d}/{_MONTHS[at.month - 1]}/{at.year}:{at:%H:%M:%S} +0000"


def _single_and_multi(pairs: Mapping[str, str]) -> tuple[dict, dict]:
    """API Gateway's two views of repeated keys: the last value, and every value in order."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs.items():
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def request_context(peer: Peer, route_key: str, event_type: str, stage: str) -> dict:
    now = now_ms()
    request_id = new_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": peer.connected_at,
        "requestTimeEpoch": now,
        "identity": {"sourceIp": peer.source_ip, "userAgent": peer.user_agent},
        "requestId": request_id,
        "domainName": peer.domain,
        "connectionId": peer.id,
        "apiId": API_ID,
    }


def connect_event(peer: Peer, request: web.Request, stage: str) -> dict:
    """The `$connect` event of the upgrade `request`."""
    headers, multi_headers = _single_and_multi(request.headers)
    forwarded = {"X-Forwarded-For": peer.source_ip, "X-Forwarded-Proto": request.scheme}
    for key, value in forwarded.items():
        headers.setdefault(key, value)
        multi_headers.setdefault(key, [value])
    query, multi_query = _single_and_multi(request.query)
    return {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": request_context(peer, "$connect", "CONNECT", stage),
        "isBase64Encoded": False,
    }


def message_event(peer: Peer, body: str, stage: str) -> dict:
    """The `$default` event of one text message."""
    context = request_context(peer, "$default", "MESSAGE", stage)
    context["messageId"] = new_id()
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(peer: Peer, stage: str) -> dict:
    """The `$disconnect` event, with the close code and reason the connection ended with."""
    headers = {"Host": peer.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = request_context(peer, "$disconnect", "DISCONNECT", stage)
    context["disconnectStatusCode"] = peer.close_code
    context["disconnectReason"] = peer.close_reason
    return {
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
