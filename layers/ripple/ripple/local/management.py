"""The `@connections` management API of the local gateway, as boto3's `apigatewaymanagementapi`
client calls it: PostToConnection, GetConnection and DeleteConnection on
`/@connections/{id}` (and the stage-prefixed `/{stage}/@connections/{id}`).

A post is answered once its frame is queued on the connection, never after the client has read
it; a gone connection, or one closed because its send buffer overflowed, answers 410. A delete
starts the close and answers 204 without waiting for the client's part of the handshake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from ripple.local.connection import Connection
from ripple.local.lambdas import iso


def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    """An error boto3 maps to `client.exceptions.<error_type>`."""
    return web.json_response(
        {"message": message}, status=status, headers={"x-amzn-ErrorType": error_type}
    )


def _gone() -> web.Response:
    return _aws_error(410, "GoneException", None)


class Tap(Protocol):
    """Sees what crosses the gateway (the Inspector's activity log); called on the event loop."""

    def connect_refused(self, status: int, body: str | None) -> None: ...
    def received(self, connection_id: str, text: str) -> None: ...
    def sent(self, connection_id: str, data: bytes) -> None: ...
    def disconnected(self, connection_id: str) -> None: ...


class ManagementApi:
    """The routes of `@connections` over the gateway's open connections."""

    def __init__(self, connections: Mapping[str, Connection], max_message_bytes: int,
                 tap: Tap | None = None):
        self.connections = connections
        self.max_message_bytes = max_message_bytes
        self.tap = tap

    def add_routes(self, app: web.Application, stage: str) -> None:
        # boto3 calls /@connections/{id}; the stage-prefixed form is the AWS endpoint shape.
        for prefix in ("", f"/{stage}"):
            resource = app.router.add_resource(prefix + "/@connections/{connection_id}")
            resource.add_route("POST", self.post)
            resource.add_route("GET", self.get)
            resource.add_route("DELETE", self.delete)

    def _find(self, request: web.Request) -> Connection | None:
        # aiohttp has already percent-decoded the id ("%3D" arrives as "=").
        conn = self.connections.get(request.match_info["connection_id"])
        return None if conn is None or conn.gone else conn

    async def post(self, request: web.Request) -> web.Response:
        limit = self.max_message_bytes
        if (request.content_length or 0) > limit:
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        data = await request.read()
        if len(data) > limit:
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        conn = self._find(request)
        if conn is None or not conn.send(data):
            return _gone()
        if self.tap is not None:
            self.tap.sent(conn.id, data)
        return web.Response(status=200)

    async def get(self, request: web.Request) -> web.Response:
        conn = self._find(request)
        if conn is None:
            return _gone()
        # The wire names are camelCase; boto3 turns them into ConnectedAt, Identity, LastActiveAt.
        return web.json_response(
            {
                "connectedAt": iso(conn.connected_at),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                "lastActiveAt": iso(conn.last_active_at),
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        conn = self._find(request)
        if conn is None:
            return _gone()
        conn.close(1000)
        return web.Response(status=204)
