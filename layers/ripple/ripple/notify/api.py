"""The notifications REST API under ``/api/``, on Powertools' ``APIGatewayHttpResolver``: the
inbox (``inbox``), one-click unsubscribe (``optout``), and the generated OpenAPI document.

Requests are validated by the routes' pydantic models; every 4xx is
``{"message": ..., "errors"?: [{"field", "message"}]}`` (the unsubscribe page answers in
HTML): malformed JSON or query parameters are 400, a body that does not validate is 422, an
unknown path 404 and a known path with another method 405 (with ``Allow``)::

    on_request(event, context)  # {"statusCode": 200, "headers": {...}, "body": "..."}
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

from ripple import codec
from ripple.events import HttpEvent
from ripple.notify import inbox, optout
from ripple.notify.caller import caller, user
from ripple.notify.exceptions import ApiError
from ripple.notify.schemas import ErrorBody

__all__ = ["app", "on_request", "openapi_document"]

TITLE, VERSION = "Ripple notifications API", "1"
DESCRIPTION = ("The notification inbox of the signed-in user, creating notifications, and "
               "one-click unsubscribe links.")
SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",  # type: ignore[dict-item]
               "description": "A user's JWT (role `authenticated`, `sub` = user id), or the "
                              "service_role key where stated."},
    "apikey": {"type": "apiKey", "in": "header", "name": "apikey",  # type: ignore[dict-item]
               "description": "The same JWT in an `apikey` header, as supabase-js sends it."},
}
# Form bodies arrive as text from API Gateway; Powertools warns in case they held binary files.
warnings.filterwarnings("ignore", message="Received multipart/form-data without base64 encoding")

# Routes any valid JWT may reach (they decide who may act); the others are a user's inbox.
NOT_INBOX = {("POST", "/api/notifications"), ("POST", "/api/notifications/cancel"),
             ("POST", "/api/notifications/explain"), ("GET", "/api/notifications/<id>/explain")}

app = APIGatewayHttpResolver(enable_validation=True, serializer=codec.dumps)
app.include_router(inbox.router)
app.include_router(optout.router)
app.enable_swagger(path="/api/docs", title=TITLE, version=VERSION, description=DESCRIPTION,
                   security_schemes=SECURITY_SCHEMES)


def _error(exc: ApiError) -> Response:
    body = ErrorBody.model_validate({"message": exc.message, "errors": exc.errors})
    return Response(status_code=exc.status, content_type=content_types.APPLICATION_JSON,
                    body=codec.dumps(body.model_dump(mode="json", exclude_none=True)),
                    headers=exc.headers)


@app.exception_handler(ApiError)
def _refused(exc: ApiError) -> Response:
    return _error(exc)


def _field(loc: Sequence[Any], where: str) -> str:
    # Powertools places a model parameter's fields under the parameter: ("query", "query",
    # "limit") is query.limit; a body model's fields sit right under "body".
    names = [str(part) for part in loc[1:]]
    if where == "query" and len(names) > 1:
        names = names[1:]
    return ".".join([where, *names])


def _not_json(event: HttpEvent) -> bool:
    try:
        codec.loads(event.text())
    except ValueError:
        return True
    return False


@app.exception_handler(RequestValidationError)
def _invalid(exc: RequestValidationError) -> Response:
    event = HttpEvent.model_validate(app.current_event.raw_event)
    route = app.context.get("_route")
    method, path = (route.method, route.path) if route is not None else ("", "")
    # Who may call comes before what they sent, as it would without validation in between.
    if path.startswith("/api/notifications"):
        try:
            (caller if (method, path) in NOT_INBOX else user)(event)
        except ApiError as refused:
            return _error(refused)
    if path == "/api/unsubscribe":
        return _error(ApiError(400, optout.ONE_CLICK_FORM))
    errors = [{"field": _field(e["loc"], str(e["loc"][0])),
               "message": str(e["msg"]).removeprefix("Value error, ")} for e in exc.errors()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if any(e["field"].startswith("query.") for e in errors):
        query = [e for e in errors if e["field"].startswith("query.")]
        return _error(ApiError(400, "Bad Request: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in query), query))
    if _not_json(event):
        return _error(ApiError(400, "Bad Request: the body must be a JSON object"))
    return _error(ApiError(422, f"Unprocessable: {summary}", errors))


@app.exception_handler(UnicodeDecodeError)
def _not_text(exc: UnicodeDecodeError) -> Response:
    return _error(ApiError(400, "Bad Request: the body must be a JSON object"))


def allowed_methods(path: str) -> list[str]:
    """The methods the API serves at ``path``, sorted; empty when it serves none."""
    # Powertools answers an unserved method with its 404; its route table tells a 405 apart.
    routes = app._static_routes + app._dynamic_routes
    return sorted({r.method for r in routes if r.rule.match(path)})


@app.not_found
def _no_route(exc: NotFoundError) -> Response:
    method, path = app.current_event.http_method.upper(), app.current_event.path
    allowed = allowed_methods(path)
    if not allowed:
        return _error(ApiError(404, f"Not Found: no route {method} {path}"))
    allow = ", ".join(allowed)
    return _error(ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"Method Not Allowed: {path} accepts "
                           f"{allow}", headers={"allow": allow}))


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    """The OpenAPI 3.1 document Powertools generates from the routes and their models."""
    doc = codec.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION,
                                                  description=DESCRIPTION,
                                                  security_schemes=SECURITY_SCHEMES))
    for operations in doc["paths"].values():
        for operation in operations.values():
            # A route that needs no JWT says so: without `security` a reader cannot tell.
            operation.setdefault("security", [])
            # Powertools lists its own 422 shape on every route; this API answers ErrorBody
            # (query errors are 400), as each route's `responses` says.
            form = operation.get("requestBody", {}).get("content", {})
            if "application/x-www-form-urlencoded" in form:  # Powertools reads both encodings
                form["multipart/form-data"] = form["application/x-www-form-urlencoded"]
            default = operation["responses"].get("422", {})
            if "HTTPValidationError" in codec.dumps(default):
                del operation["responses"]["422"]
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    return doc


@app.get("/api/openapi.json", operation_id="openapi", summary="This document",
         response_description="The OpenAPI 3.1 document")
def openapi() -> dict:
    """200: the OpenAPI 3.1 document of every route."""
    return openapi_document()


def _lowercase(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {name.lower(): value for name, value in (headers or {}).items()}


def on_request(event: dict, context: Any) -> dict:
    """The response to one request to ``/api/...``; bad input is a 4xx, never an exception."""
    result = app.resolve(event, context)
    # HTTP header names are case-insensitive; one spelling keeps the answers' headers uniform.
    result["headers"] = _lowercase(result.get("headers"))
    return result
