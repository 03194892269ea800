"""Typed models of the API Gateway WebSocket events the handlers receive."""
from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict

from ripple import codec


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in (headers or {}).items() if key.lower() == wanted), None)


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    routeKey: str
    eventType: str
    connectionId: str
    domainName: str | None = None
    stage: str | None = None
    connectedAt: int | None = None
    requestId: str | None = None
    disconnectStatusCode: int | None = None
    disconnectReason: str | None = None


class WebSocketEvent(BaseModel):
    """A `$connect`, `$default` or `$disconnect` invocation from API Gateway."""

    model_config = ConfigDict(extra="allow")

    requestContext: RequestContext
    headers: dict[str, str] | None = None
    queryStringParameters: dict[str, str] | None = None
    body: str | None = None
    isBase64Encoded: bool = False

    @property
    def connection_id(self) -> str:
        return self.requestContext.connectionId

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return _header(self.headers, name)

    def query(self, name: str) -> str | None:
        return (self.queryStringParameters or {}).get(name)


class HttpEvent(BaseModel):
    """An API Gateway HTTP API (payload format 2.0) request."""

    model_config = ConfigDict(extra="allow")

    rawPath: str = "/"
    headers: dict[str, str] | None = None
    queryStringParameters: dict[str, str] | None = None
    pathParameters: dict[str, str] | None = None
    body: str | None = None
    isBase64Encoded: bool = False

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
        if self.body is None:
            return ""
        if self.isBase64Encoded:
            return base64.b64decode(self.body).decode("utf-8", errors="replace")
        return self.body


def json_response(status: int, body: object) -> dict:
    """An HTTP API response with a JSON body."""
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": codec.dumps(body)}


def response(status: int, body: str | None = None) -> dict:
    """A Lambda proxy response for API Gateway."""
    out: dict = {"statusCode": status}
    if body is not None:
        out["body"] = body
    return out
