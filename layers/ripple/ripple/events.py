"""Typed models of the API Gateway WebSocket events the handlers receive."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
        wanted = name.lower()
        for key, value in (self.headers or {}).items():
            if key.lower() == wanted:
                return value
        return None

    def query(self, name: str) -> str | None:
        return (self.queryStringParameters or {}).get(name)


def response(status: int, body: str | None = None) -> dict:
    """A Lambda proxy response for API Gateway."""
    out: dict = {"statusCode": status}
    if body is not None:
        out["body"] = body
    return out
