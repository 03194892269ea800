"""`POST /realtime/v1/api/broadcast`: the REST side of broadcast, as Supabase serves it."""
from __future__ import annotations

from ripple import codec
from ripple.auth.jwt import AuthError, verify
from ripple.broadcast.outbound import InvalidRequest, parse_request, send
from ripple.events import HttpEvent, json_response
from ripple.gateway import connections_api
from ripple.store import store


def on_request(event: HttpEvent) -> dict:
    """202 once every message is relayed; 401/403 for a missing or non-service_role key; 400 on a bad body."""
    try:
        claims = verify(event.bearer())
    except AuthError as exc:
        return json_response(401, {"message": f"Unauthorized: {exc}"})
    if claims.role != "service_role":
        return json_response(403, {"message": "Forbidden: broadcasting over the API needs the service_role key"})
    try:
        body = codec.loads(event.text())
    except ValueError:
        return json_response(400, {"message": "body must be JSON: {\"messages\": [...]}"})
    try:
        request = parse_request(body)
    except InvalidRequest as exc:
        return json_response(400, {"message": f"invalid broadcast: {exc}"})
    send(store(), connections_api(), request.messages)
    return {"statusCode": 202}
