"""A local WebSocket gateway that behaves like an API Gateway WebSocket API.

It routes `$connect`, `$default` and `$disconnect` to plain Lambda handlers with
API-Gateway-shaped proxy events, serves the `@connections` management API that boto3's
`apigatewaymanagementapi` client calls, and enforces API Gateway's per-connection limits.
Everything runs on one port:

    gateway = Gateway(Routes(connect=on_connect, default=on_message, disconnect=on_disconnect))
    await gateway.start()
    api = boto3.client("apigatewaymanagementapi", endpoint_url=gateway.url)
    # clients connect to gateway.ws_url
    await gateway.stop()

What a client or a handler sees, and why:
- `$connect` runs before the upgrade is answered; a non-2xx `statusCode` becomes the HTTP
  status of the refused upgrade, an exception becomes 500. A response without `statusCode`
  counts as 200, and a `Sec-WebSocket-Protocol` header in it selects the subprotocol.
- Text frames go to `$default` one at a time per connection, in order; connections run
  concurrently. The `$default` response is ignored (no route responses are configured), and
  an exception sends the client API Gateway's `{"message": "Internal server error", ...}`.
- Closing codes: binary frame 1003, message over `Limits.max_message_bytes` or a single frame
  over `Limits.max_frame_bytes` 1009, idle or over the maximum lifetime 1001, `DELETE @connections/{id}` 1000 (what API Gateway reports
  as "Connection Closed Normally"), `Gateway.stop()` 1001.
- Idle means no message in either direction: API Gateway keeps a connection open while the
  backend posts to it, so posts count as activity, as do client pings and pongs.
- `requestContext.domainName` is the Host the client used (with its port), so the AWS idiom
  `http://{domainName}/{stage}` is a working management endpoint here too.
- API Gateway's 32 KB frame quota is enforced on the raw stream: aiohttp reassembles fragments
  before handing over a message, so `FrameMeter` reads each frame's header ahead of aiohttp's
  parser (a private hook, `RequestHandler._payload_parser`) and fails the socket with 1009 the
  way aiohttp does for an oversize message. A 100 KB message in four 25 KB fragments passes, as
  on API Gateway; the same message in one frame is closed. Client libraries send each message
  as one frame, so for them the frame quota is the effective message limit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from ripple.local.connection import Connection, now_ms
from ripple.local.frame_meter import FrameMeter

logger = logging.getLogger("ripple.local.gateway")

Handler = Callable[[dict, Any], dict]

API_ID = "local"
# How long a closing socket waits for the client's close frame before dropping the TCP link.
CLOSE_HANDSHAKE_SECONDS = 2.0
# The Lambda timeout a handler's context reports; API Gateway integrations stop at 29 s.
HANDLER_TIMEOUT_SECONDS = 29.0

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Tap(Protocol):
    """Sees what crosses the gateway (the Inspector's activity log); called on the event loop."""

    def connect_refused(self, status: int, body: str | None) -> None: ...
    def received(self, connection_id: str, text: str) -> None: ...
    def sent(self, connection_id: str, data: bytes) -> None: ...
    def disconnected(self, connection_id: str) -> None: ...


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas; tests shrink them to see each one trip."""

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 600.0
    max_connection_seconds: float = 7200.0


@dataclass
class Routes:
    """The three Lambda handlers a WebSocket API routes to."""

    connect: Handler
    default: Handler
    disconnect: Handler


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


def new_id() -> str:
    """An id shaped like API Gateway's connection and request ids, e.g. "JC1dgf9yoAMCK-g="."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _request_time(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return f"{at.day:02d}/{_MONTHS[at.month - 1]}/{at.year}:{at:%H:%M:%S} +0000"


def _iso(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _single_and_multi(pairs: Mapping[str, str]) -> tuple[dict, dict]:
    """API Gateway's two views of repeated keys: the last value, and every value in order."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs.items():
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    """An error boto3 maps to `client.exceptions.<error_type>`."""
    return web.json_response(
        {"message": message}, status=status, headers={"x-amzn-ErrorType": error_type}
    )


class Gateway:
    """An aiohttp server on one port: WebSocket upgrades, `@connections`, and `/health`.

    Add routes to `app` before `start()`. Handlers are synchronous Lambda handlers and run in
    worker threads, so they may call back into this gateway's management API.
    """

    def __init__(
        self,
        routes: Routes,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "local",
        ws_paths: tuple[str, ...] = ("/realtime/v1/websocket",),
        limits: Limits = Limits(),
        ready: Callable[[], bool] = lambda: True,
        tap: Tap | None = None,
    ):
        self.routes = routes
        self.host = host
        self.port = port
        self.stage = stage
        self.ws_paths = tuple(ws_paths)
        self.limits = limits
        self.ready = ready
        self.tap = tap
        self.app = web.Application(client_max_size=max(1024**2, limits.max_message_bytes + 1))
        self._connections: dict[str, Connection] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = False

        for path in sorted({p for raw in self.ws_paths for p in (raw, raw.rstrip("/") + "/")}):
            self.app.router.add_get(path, self._upgrade, allow_head=False)
        # boto3 calls /@connections/{id}; the stage-prefixed form is the AWS endpoint shape.
        for prefix in ("", f"/{stage}"):
            resource = self.app.router.add_resource(prefix + "/@connections/{connection_id}")
            resource.add_route("POST", self._post_to_connection)
            resource.add_route("GET", self._get_connection)
            resource.add_route("DELETE", self._delete_connection)
        self.app.router.add_get("/health", self._health)

    @property
    def url(self) -> str:
        """The management API endpoint for boto3, e.g. "http://127.0.0.1:54321"."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Where clients connect, e.g. "ws://127.0.0.1:54321/realtime/v1/websocket"."""
        return "ws" + self.url.removeprefix("http") + self.ws_paths[0]

    async def start(self) -> None:
        """Bind and serve; with port 0 the OS picks a free port, then stored in `port`."""
        # No access log: the request line carries the apikey JWT in its query string.
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        logger.info("gateway listening on %s", self.url)

    async def stop(self) -> None:
        """Close every socket with 1001, wait for each $disconnect, then stop the server."""
        self._stopping = True
        while self._connections:
            connections = list(self._connections.values())
            await asyncio.gather(*(c.close(1001) for c in connections), return_exceptions=True)
            await asyncio.gather(*(c.finished.wait() for c in connections))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        logger.info("gateway stopped")

    async def _invoke(self, handler: Handler, event: dict, route: str) -> Any:
        context = LambdaContext(f"ripple-local-{route}", event["requestContext"]["requestId"])
        # Handlers block on network IO, including calls back into this event loop.
        return await asyncio.to_thread(handler, event, context)

    def _request_context(self, conn: Connection, route_key: str, event_type: str) -> dict:
        now = now_ms()
        request_id = new_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": conn.connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            "requestId": request_id,
            "domainName": conn.domain,
            "connectionId": conn.id,
            "apiId": API_ID,
        }

    def _connect_event(self, conn: Connection, request: web.Request) -> dict:
        headers, multi_headers = _single_and_multi(request.headers)
        forwarded = {"X-Forwarded-For": conn.source_ip, "X-Forwarded-Proto": request.scheme}
        for key, value in forwarded.items():
            headers.setdefault(key, value)
            multi_headers.setdefault(key, [value])
        query, multi_query = _single_and_multi(request.query)
        return {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "requestContext": self._request_context(conn, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }

    def _message_event(self, conn: Connection, body: str) -> dict:
        context = self._request_context(conn, "$default", "MESSAGE")
        context["messageId"] = new_id()
        return {"requestContext": context, "body": body, "isBase64Encoded": False}

    def _disconnect_event(self, conn: Connection) -> dict:
        headers = {"Host": conn.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        context = self._request_context(conn, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = conn.close_code
        context["disconnectReason"] = conn.close_reason
        return {
            "headers": headers,
            "multiValueHeaders": {key: [value] for key, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return web.json_response({"message": "Upgrade Required"}, status=426)
        conn = Connection(
            new_id(),
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
            domain=request.host,
        )
        try:
            response = await self._invoke(
                self.routes.connect, self._connect_event(conn, request), "connect"
            )
        except Exception:
            logger.exception("$connect handler failed for %s", conn.id)
            return web.json_response({"message": "Internal server error"}, status=500)
        response = response if isinstance(response, dict) else {}
        status = int(response.get("statusCode", 200))
        if not 200 <= status < 300:
            logger.info("connection %s refused with %s", conn.id, status)
            body = response.get("body")
            if self.tap is not None:
                self.tap.connect_refused(status, body if isinstance(body, str) else None)
            return web.Response(status=status, text=body if isinstance(body, str) else None)
        if self._stopping:
            return web.json_response({"message": "Service Unavailable"}, status=503)

        headers = response.get("headers") or {}
        protocol = next(
            (v for k, v in headers.items() if k.lower() == "sec-websocket-protocol"), None
        )
        conn.ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            timeout=CLOSE_HANDSHAKE_SECONDS,
            autoping=False,  # pings are read here so that they count as activity
            compress=False,
            # aiohttp refuses a message of exactly max_msg_size; API Gateway accepts 128 KB.
            max_msg_size=self.limits.max_message_bytes + 1,
        )
        worker: asyncio.Task | None = None
        try:
            # Posts that arrive during the handshake wait for it instead of failing.
            async with conn.send_lock:
                self._connections[conn.id] = conn
                await conn.ws.prepare(request)
                protocol = request.protocol
                protocol._payload_parser = FrameMeter(protocol._payload_parser, conn.ws._reader,
                                                      self.limits.max_frame_bytes)
            logger.info("connection %s open", conn.id)
            worker = asyncio.create_task(self._work(conn))
            await self._read(conn)
        finally:
            conn.ended(1006)
            self._connections.pop(conn.id, None)
            if worker is not None:
                conn.inbox.put_nowait(None)
                await worker
            await self._disconnect(conn)
        return conn.ws

    async def _read(self, conn: Connection) -> None:
        """Read client frames until the socket closes, enforcing the size and time limits."""
        ws = conn.ws
        assert ws is not None
        while True:
            idle_at = conn.active + self.limits.idle_timeout
            expires_at = conn.opened + self.limits.max_connection_seconds
            wait = min(idle_at, expires_at) - time.monotonic()
            if wait <= 0:
                await conn.close(1001)
                return
            try:
                msg = await ws.receive(timeout=wait)
            except TimeoutError:
                continue  # a post may have moved the idle deadline; the loop re-checks both
            kind = msg.type
            if kind is WSMsgType.TEXT:
                conn.touch()
                conn.inbox.put_nowait(msg.data)
            elif kind is WSMsgType.PING:
                conn.touch()
                await ws.pong(msg.data)
            elif kind is WSMsgType.PONG:
                conn.touch()
            elif kind is WSMsgType.BINARY:
                await conn.close(1003)
                return
            elif kind is WSMsgType.CLOSE:
                # A close frame without a status is reported as 1005, as API Gateway does.
                conn.ended(msg.data or 1005, msg.extra or None)
                return
            elif kind is WSMsgType.ERROR:
                # aiohttp already closed the socket with the protocol error's code (1009 etc.).
                conn.ended(getattr(msg.data, "code", 1006))
                return
            else:
                return  # CLOSING or CLOSED: another task closed the socket, or the link dropped

    async def _work(self, conn: Connection) -> None:
        """Hand one connection's messages to $default one at a time, in arrival order."""
        while (body := await conn.inbox.get()) is not None:
            if self.tap is not None:
                self.tap.received(conn.id, body)
            event = self._message_event(conn, body)
            try:
                await self._invoke(self.routes.default, event, "default")
            except Exception:
                logger.exception("$default handler failed for %s", conn.id)
                error = {
                    "message": "Internal server error",
                    "connectionId": conn.id,
                    "requestId": event["requestContext"]["requestId"],
                }
                await conn.send(json.dumps(error).encode())

    async def _disconnect(self, conn: Connection) -> None:
        logger.info("connection %s closed: %s %s", conn.id, conn.close_code, conn.close_reason)
        if self.tap is not None:
            self.tap.disconnected(conn.id)
        try:
            await self._invoke(self.routes.disconnect, self._disconnect_event(conn), "disconnect")
        except Exception:
            logger.exception("$disconnect handler failed for %s", conn.id)
        finally:
            conn.finished.set()

    def _find(self, request: web.Request) -> Connection | None:
        # aiohttp has already percent-decoded the id ("%3D" arrives as "=").
        conn = self._connections.get(request.match_info["connection_id"])
        return None if conn is None or conn.gone else conn

    async def _post_to_connection(self, request: web.Request) -> web.Response:
        limit = self.limits.max_message_bytes
        if (request.content_length or 0) > limit:
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        data = await request.read()
        if len(data) > limit:
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        conn = self._find(request)
        if conn is None or not await conn.send(data):
            return _aws_error(410, "GoneException", None)
        if self.tap is not None:
            self.tap.sent(conn.id, data)
        return web.Response(status=200)

    async def _get_connection(self, request: web.Request) -> web.Response:
        conn = self._find(request)
        if conn is None:
            return _aws_error(410, "GoneException", None)
        # The wire names are camelCase; boto3 turns them into ConnectedAt, Identity, LastActiveAt.
        return web.json_response(
            {
                "connectedAt": _iso(conn.connected_at),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                "lastActiveAt": _iso(conn.last_active_at),
            }
        )

    async def _delete_connection(self, request: web.Request) -> web.Response:
        conn = self._find(request)
        if conn is None:
            return _aws_error(410, "GoneException", None)
        await conn.close(1000)
        return web.Response(status=204)

    async def _health(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unavailable"}, status=503)
