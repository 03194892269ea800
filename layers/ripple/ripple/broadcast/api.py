"""The REST side of broadcast, as Supabase serves it:

- `POST /realtime/v1/api/broadcast` with `{"messages": [{topic, event, payload, private}]}`;
- `POST /realtime/v1/api/broadcast/<topic>/events/<event>[?private=true]` with the payload as
  the JSON body: realtime-js's `channel.httpSend(event, payload)`.

Both need the service_role key and answer 202 once every message is relayed.
"""
from __future__ import annotations

from urllib.parse import unquote

from ripple import codec
from ripple.auth.jwt import AuthError, verify
from ripple.broadcast.outbound import (
    MAX_FRAME_BYTES,
    InvalidRequest,
    OutboundMessage,
    oversize,
    parse_request,
    send,
)
from ripple.events import HttpEvent, json_response
from ripple.gateway import connections_api
from ripple.store import store


def on_request(event: HttpEvent) -> dict:
    """202 once every message is relayed; 401/403 for a missing or non-service_role key; 400 on a
    bad body or a message too large for API Gateway (none is sent); 415 for a binary payload."""
    try:
        claims = verify(event.bearer())
    except AuthError as exc:
        return _error(401, f"Unauthorized: {exc}")
    if claims.role != "service_role":
        return _error(403, "Forbidden: broadcasting over the API needs the service_role key")
    path = event.pathParameters or {}
    try:
        if "topic" in path and "event" in path:
            messages = [_single(event, unquote(path["topic"]), unquote(path["event"]))]
        else:
            messages = parse_request(_json(event)).messages
    except InvalidRequest as exc:
        return _error(400, f"invalid broadcast: {exc}")
    except _Unsupported as exc:
        return _error(415, str(exc))
    too_large = oversize(messages)
    if too_large:
        return json_response(400, {
            "error": "payload_size_exceeded",
            "message": f"a broadcast is at most {MAX_FRAME_BYTES} bytes once framed (API Gateway's "
                       "message limit); nothing was sent",
            "errors": [o.describe() for o in too_large]})
    send(store(), connections_api(), messages)
    return {"statusCode": 202}


class _Unsupported(ValueError):
    """A body Ripple cannot relay as JSON text."""


def _json(event: HttpEvent):
    try:
        return codec.loads(event.text())
    except ValueError:
        raise InvalidRequest("body must be JSON") from None


def _single(event: HttpEvent, topic: str, name: str) -> OutboundMessage:
    """httpSend's message: the body is the payload; `?private=true` for a private channel."""
    content_type = (event.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/octet-stream" or event.isBase64Encoded:
        raise _Unsupported("binary payloads cannot be relayed through API Gateway's text frames; "
                           "send JSON")
    private = (event.queryStringParameters or {}).get("private", "").lower() == "true"
    request = parse_request({"messages": [{"topic": topic, "event": name, "payload": _json(event),
                                           "private": private}]})
    return request.messages[0]


def _error(status: int, message: str) -> dict:
    # realtime-js's httpSend reports `error` (else `message`) from an error body.
    return json_response(status, {"error": message, "message": message})
