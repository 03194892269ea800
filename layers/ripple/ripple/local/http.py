"""HTTP routes on the local gateway that invoke Lambda handlers as an API Gateway HTTP API does
(payload format 2.0): the same handler code serves `sam deploy` and `make dev`."""
from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from ripple.local.gateway import Handler, LambdaContext


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind `app` on host:port (0: the OS picks a free port) and serve it; returns the runner
    (`cleanup()` stops serving) and the port bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]


def http_route(name: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp route that turns the request into an HTTP API event for `handler`."""

    async def route(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body, encoded = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode(), True
        request_id = str(uuid.uuid4())
        now = time.time()
        resource = request.match_info.route.resource
        route_key = f"{request.method} {resource.canonical if resource else request.path}"
        event = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "queryStringParameters": dict(request.query) or None,
            "pathParameters": dict(request.match_info) or None,
            "body": body if raw else None,
            "isBase64Encoded": encoded,
            "requestContext": {
                "accountId": "123456789012", "apiId": "local", "domainName": request.host,
                "domainPrefix": request.host.split(".")[0].split(":")[0],
                "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                         "sourceIp": request.remote or "127.0.0.1",
                         "userAgent": request.headers.get("User-Agent", "")},
                "requestId": request_id, "routeKey": route_key, "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
        }
        try:
            result = await asyncio.to_thread(handler, event, LambdaContext(name, request_id))
        except Exception:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        payload = result.get("body") or ""
        if result.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        return web.Response(status=result.get("statusCode", 200), headers=result.get("headers") or {},
                            body=payload)

    return route
