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

The parts: `lambdas` (handler type, context, event shapes, worker threads), `connection` (one
socket: limits, frame quota, send buffer and writer), `management` (`@connections`), and this
module (the server, the upgrade and each socket's read loop).

What a client or a handler sees, and why:
- `$connect` runs before the upgrade is answered; a non-2xx `statusCode` becomes the HTTP
  status of the refused upgrade, an exception becomes 500. A response without `statusCode`
  counts as 200, and a `Sec-WebSocket-Protocol` header in it selects the subprotocol.
- Text frames go to `$default` one at a time per connection, in order; connections run
  concurrently. The `$default` response is ignored (no route responses are configured), and
  an exception sends the client API Gateway's `{"message": "Internal server error", ...}`.
- `$disconnect` handlers run on a pool of their own, many at once, so a crowd of sockets
  closing together is not served a few at a time.
- Posts are answered once queued: each connection has a bounded send buffer drained in order by
  its own writer, so a client that stops reading delays no post to anyone. Past the buffer's
  limits the connection closes with 1008 and later posts answer 410 (see `connection`).
- Closing codes: binary frame 1003, message over `Limits.max_message_bytes` or a single frame
  over `Limits.max_frame_bytes` 1009, idle or over the maximum lifetime 1001,
  `DELETE @connections/{id}` 1000 (what API Gateway reports as "Connection Closed Normally"),
  send buffer overflow 1008, `Gateway.stop()` 1001. Frames queued before a close still go out
  first, for up to `CLOSE_HANDSHAKE_SECONDS`.
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
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from ripple.local.connection import CLOSE_HANDSHAKE_SECONDS, Connection, FrameMeter, Limits
from ripple.local.lambdas import (
    Handler,
    Invoker,
    LambdaContext,
    connect_event,
    disconnect_event,
    message_event,
    new_id,
)
from ripple.local.management import ManagementApi, Tap

__all__ = ["Gateway", "Handler", "LambdaContext", "Limits", "Routes", "new_id"]

logger = logging.getLogger("ripple.local.gateway")
# How long a stopping gateway waits for the $disconnects of the sockets it closed.
STOP_SECONDS = 30.0


@dataclass
class Routes:
    """The three Lambda handlers a WebSocket API routes to."""

    connect: Handler
    default: Handler
    disconnect: Handler


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
        limits: Limits | None = None,
        ready: Callable[[], bool] = lambda: True,
        tap: Tap | None = None,
    ):
        self.routes = routes
        self.host = host
        self.port = port
        self.stage = stage
        self.ws_paths = tuple(ws_paths)
        self.limits = limits = limits or Limits()
        self.ready = ready
        self.tap = tap
        self.app = web.Application(client_max_size=max(1024**2, limits.max_message_bytes + 1))
        self._connections: dict[str, Connection] = {}
        self.invoker = Invoker()
        self._runner: web.AppRunner | None = None
        self._stopping = False

        for path in sorted({p for raw in self.ws_paths for p in (raw, raw.rstrip("/") + "/")}):
            self.app.router.add_get(path, self._upgrade, allow_head=False)
        ManagementApi(self._connections, limits.max_message_bytes, tap).add_routes(self.app, stage)
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
        # `stop` has waited for the $disconnects already; a handler still running then gets
        # one more second (aiohttp's default is a minute).
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        logger.info("gateway listening on %s", self.url)

    async def stop(self) -> None:
        """Close every socket with 1001, wait for each $disconnect (at most STOP_SECONDS in all:
        ten thousand of them take longer, and a stopping stack keeps none of their rows), then
        stop the server."""
        self._stopping = True
        deadline = time.monotonic() + STOP_SECONDS
        while self._connections and time.monotonic() < deadline:
            connections = list(self._connections.values())
            await asyncio.gather(*(c.close(1001) for c in connections), return_exceptions=True)
            try:
                await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in connections)),
                                       max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                logger.warning("gateway stopping with %d $disconnect(s) still running", len(self._connections))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.invoker.shutdown()
        logger.info("gateway stopped")

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return web.json_response({"message": "Upgrade Required"}, status=426)
        conn = Connection(
            new_id(),
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
            domain=request.host,
            limits=self.limits,
        )
        try:
            response = await self.invoker.invoke(
                self.routes.connect, connect_event(conn, request, self.stage), "connect"
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
        # Posts that arrive during the handshake are queued and go out once it is done.
        self._connections[conn.id] = conn
        worker: asyncio.Task | None = None
        try:
            await conn.ws.prepare(request)
            self._meter_frames(request, conn.ws)
            conn.opened_on(request.transport)
            if conn.gone:  # closed (DELETE, stop) while the handshake was under way
                await conn.close(conn.close_code or 1001)
            logger.info("connection %s open", conn.id)
            worker = asyncio.create_task(self._work(conn))
            await self._read(conn)
        finally:
            conn.ended(1006)
            self._connections.pop(conn.id, None)
            await conn.release()
            if worker is not None:
                conn.inbox.put_nowait(None)
                await worker
            await self._disconnect(conn)
        return conn.ws

    def _meter_frames(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        protocol = request.protocol
        protocol._payload_parser = FrameMeter(
            protocol._payload_parser, ws._reader, self.limits.max_frame_bytes
        )

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
            event = message_event(conn, body, self.stage)
            try:
                await self.invoker.invoke(self.routes.default, event, "default")
            except Exception:
                logger.exception("$default handler failed for %s", conn.id)
                error = {
                    "message": "Internal server error",
                    "connectionId": conn.id,
                    "requestId": event["requestContext"]["requestId"],
                }
                conn.send(json.dumps(error).encode())

    async def _disconnect(self, conn: Connection) -> None:
        logger.info("connection %s closed: %s %s", conn.id, conn.close_code, conn.close_reason)
        if self.tap is not None:
            self.tap.disconnected(conn.id)
        try:
            await self.invoker.invoke(
                self.routes.disconnect, disconnect_event(conn, self.stage), "disconnect"
            )
        except Exception:
            logger.exception("$disconnect handler failed for %s", conn.id)
        finally:
            conn.finished.set()

    async def _health(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unavailable"}, status=503)
