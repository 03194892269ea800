"""API Gateway events, parsed with Powertools' Parser models and a few accessors Ripple reads.

    event = MessageEvent.model_validate(lambda_event)   # $default
    event.connection_id, event.body
"""
from __future__ import annotations

import base64

from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from pydantic import Field

from ripple import codec


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in (headers or {}).items() if key.lower() == wanted), None)


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    """`$connect`: the upgrade request's headers and query string."""

    # Powertools' model leaves out the query string; `$connect` carries the client's apikey and vsn there.
    query_string_parameters: dict[str, str] | None = Field(None, alias="queryStringParameters")

    @property
    def connection_id(self) -> str:
        return self.request_context.connection_id

    @property
    def connected_at_ms(self) -> int:
        return int(self.request_context.connected_at.timestamp() * 1000)

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return _header(self.headers, name)

    def query(self, name: str) -> str | None:
        return (self.query_string_parameters or {}).get(name)


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    """`$disconnect`: which connection closed, and API Gateway's close code and reason."""

    @property
    def connection_id(self) -> str:
        return self.request_context.connection_id


class MessageEvent(APIGatewayWebSocketMessageEventModel):
    """`$default`: one text frame from a client."""

    @property
    def connection_id(self) -> str:
        return self.request_context.connection_id

    @property
    def text(self) -> str | None:
        return self.body if isinstance(self.body, str) else None


class HttpEvent(APIGatewayProxyEventV2Model):
    """An API Gateway HTTP API request (payload format 2.0)."""

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return _header(self.headers, name)

    def bearer(self) -> str | None:
        """The request's JWT: `Authorization: Bearer …`, else the `apikey` header."""
        auth = self.header("authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return self.header("apikey")

    def text(self) -> str:
        body = self.body if isinstance(self.body, str) else None
        if body is None:
            return ""
        if self.isBase64Encoded:
            return base64.b64decode(body).decode("utf-8", errors="replace")
        return body


def json_response(status: int, body: object) -> dict:
    """An HTTP API response with a JSON body."""
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": codec.dumps(body)}


def response(status: int, body: str | None = None) -> dict:
    """A Lambda proxy response for API Gateway."""
    out: dict = {"statusCode": status}
    if body is not None:
        out["body"] = body
    return out
