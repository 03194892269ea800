"""The notifications REST API under ``/api/``: a user's inbox, creating notifications, and
one-click unsubscribe, behind one HTTP API (payload 2.0) handler.

Inbox statements run as the caller (``role`` and ``request.jwt.claims`` set for the
transaction), so the database's row-level security decides what a user sees, marks read or
deletes. Creating notifications and recording unsubscribes run as service_role, after this
module has decided the caller may. Every 4xx is ``{"message": ..., "errors"?: [...]}`` (the
GET unsubscribe link answers in HTML)::

    on_request(HttpEvent.model_validate(event))  # {"statusCode": 200, "headers": ..., "body": ...}
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.parser
import email.policy
import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode
from uuid import UUID

import psycopg
from pydantic import BaseModel, ValidationError

from ripple import codec
from ripple.auth.jwt import AuthError, Claims, _secret, verify
from ripple.db import database
from ripple.events import HttpEvent, json_response, response
from ripple.notify.exceptions import InvalidToken
from ripple.notify.openapi import (
    CreatedNotification,
    ErrorBody,
    ListQuery,
    MarkedRead,
    NotificationItem,
    NotificationPage,
    NotificationRequest,
    OneClick,
    Operation,
    ReadUpdate,
    Reply,
    Unsubscribed,
    UnsubscribeQuery,
    document,
)
from ripple.notify.unsubscribe import UnsubscribeRequest, read_token

__all__ = ["HttpEvent", "ROUTES", "on_request"]

# Unsubscribe links keep working in year-old emails (CAN-SPAM asks for at least 30 days).
UNSUBSCRIBE_MAX_AGE = dt.timedelta(days=365)
ITEM = "id, type, title, message, priority, delivery_method, action_url, data, read_at, created_at"
CREATED = f"{ITEM}, organization_id, user_id, role_target"

ACT_AS = """
select set_config('role', %(role)s, true), set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.jwt.claim.sub', %(sub)s, true),
       set_config('request.jwt.claim.role', %(role)s, true)
"""
INSERT = f"""
insert into public.notifications (organization_id, user_id, role_target, type, title, message,
                                  priority, delivery_method, action_url, data)
values (%(organization_id)s, %(user_id)s, %(role_target)s, %(type)s, %(title)s, %(message)s,
        %(priority)s, %(delivery_method)s, %(action_url)s, %(data)s::jsonb)
returning {CREATED}
"""
# An authenticated caller may notify if they are an admin of the organization and the target
# user (when there is one) is a member of it.
MAY_NOTIFY = """
select exists (select 1 from public.notification_recipients_v r
               where r.user_id = %(caller)s and r.organization_id = %(org)s
                 and r.role = 'admin') as admin,
       %(target)s::uuid is null
       or exists (select 1 from public.notification_recipients_v r
                  where r.user_id = %(target)s::uuid and r.organization_id = %(org)s) as member
"""
MARK = f"""
update public.notifications
set read_at = case when %(read)s then coalesce(read_at, now()) end
where id = %(id)s
returning {ITEM}
"""
DELETE = "delete from public.notifications where id = %s returning id"
# RLS already limits the update to the caller's rows; the user_id term uses the unread index.
MARK_ALL = """
with marked as (
  update public.notifications set read_at = now()
  where read_at is null and user_id = (select auth.uid())
  returning 1
)
select count(*)::integer as updated from marked
"""
UNSUBSCRIBE = """
insert into public.notification_preferences (user_id, type, channel, enabled)
values (%s, %s, %s, false)
on conflict (user_id, type, channel) do update set enabled = false
"""


class ApiError(Exception):
    """A request refused with ``status``; rendered as ``ErrorBody`` JSON."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors
        self.headers = headers or {}

    def render(self) -> dict:
        body = ErrorBody(message=self.message, errors=self.errors)
        out = json_response(self.status, body.model_dump(mode="json", exclude_none=True))
        out["headers"].update(self.headers)
        return out


# -- pure: cursors, statements, forms, pages ----------------------------------------------------
@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last item's (created_at, id), in the inbox's order."""

    created_at: dt.datetime
    id: UUID


def encode_cursor(cursor: Cursor) -> str:
    """An opaque URL-safe string for ``cursor``."""
    raw = codec.dumps([cursor.created_at.isoformat(), str(cursor.id)]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> Cursor:
    """The cursor ``encode_cursor`` made; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, id_ = codec.loads(raw)
        cursor = Cursor(dt.datetime.fromisoformat(created_at), UUID(id_))
    except (binascii.Error, TypeError, ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None
    if cursor.created_at.tzinfo is None:
        raise ValueError("cursor is not one this API returned")
    return cursor


def page_statement(query: ListQuery, after: Cursor | None) -> tuple[str, dict]:
    """The statement for one page of the inbox, newest first, one row more than the page."""
    where, params = [], {"limit": query.limit + 1}
    if query.type is not None:
        where.append("type = %(type)s")
        params["type"] = query.type
    if query.read_filter is not None:
        where.append("read_at is not null" if query.read_filter else "read_at is null")
    if after is not None:
        where.append("(created_at, id) < (%(after_at)s, %(after_id)s)")
        params.update(after_at=after.created_at, after_id=after.id)
    clause = f"where {' and '.join(where)} " if where else ""
    return (f"select {ITEM} from public.notifications {clause}"
            "order by created_at desc, id desc limit %(limit)s"), params


def form_fields(content_type: str | None, body: str) -> dict[str, str]:
    """The fields of a form body, url-encoded or ``multipart/form-data``."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        return dict(parse_qsl(body, keep_blank_values=True))
    message = email.parser.Parser(policy=email.policy.HTTP).parsestr(
        f"Content-Type: {content_type}\r\n\r\n{body}")
    fields = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = str(part.get_content()).strip()
    return fields


_CHANNEL_WORDS = {"email": "email", "sms": "SMS", "in_app": "in-app"}


def confirm_text(type: str, channel: str) -> str:
    """``Unsubscribe from <type> <channel> notifications?``; type ``*`` reads *all*."""
    what = "all" if type == "*" else type
    return f"Unsubscribe from {what} {_CHANNEL_WORDS.get(channel, channel)} notifications?"


def unsubscribed_text(type: str, channel: str) -> str:
    """``You are unsubscribed from <type> <channel> notifications.``; type ``*`` reads *all*."""
    what = "all" if type == "*" else type
    return f"You are unsubscribed from {what} {_CHANNEL_WORDS.get(channel, channel)} notifications."


def html_page(status: int, title: str, text: str, button: tuple[str, str] | None = None) -> dict:
    """A minimal HTML response; ``title`` and ``text`` are escaped. ``button`` is an optional
    (label, query string) pair: a form posting ``List-Unsubscribe=One-Click`` to this same path."""
    form = ""
    if button is not None:
        label, query = button
        form = (f"<form method=\"post\" action=\"?{html.escape(query)}\">"
                "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                f"<button type=\"submit\">{html.escape(label)}</button></form>")
    body = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title></head>"
            f"<body><main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</main>"
            "</body></html>")
    return {"statusCode": status, "body": body,
            "headers": {"content-type": "text/html; charset=utf-8", "cache-control": "no-store",
                        "content-security-policy": "default-src 'none'"}}


def _errors(exc: ValidationError, where: str) -> list[dict]:
    out = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in (where, *e["loc"]))
        out.append({"field": loc, "message": e["msg"].removeprefix("Value error, ")})
    return out


def _summary(errors: list[dict]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


# -- request parsing ----------------------------------------------------------------------------
def _method(event: HttpEvent) -> str:
    return event.requestContext.http.method.upper()


def _query(model: type[BaseModel], event: HttpEvent) -> Any:
    try:
        return model.model_validate(event.queryStringParameters or {})
    except ValidationError as exc:
        errors = _errors(exc, "query")
        raise ApiError(400, f"Bad Request: {_summary(errors)}", errors) from None


def _body(model: type[BaseModel], event: HttpEvent) -> Any:
    try:
        value = codec.loads(event.text())
    except ValueError:
        raise ApiError(400, "Bad Request: the body must be a JSON object") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = _errors(exc, "body")
        raise ApiError(422, f"Unprocessable: {_summary(errors)}", errors) from None


def _notification_id(params: dict[str, str]) -> UUID:
    try:
        return UUID(params["id"])
    except ValueError:
        raise ApiError(404, "Not Found: a notification id is a UUID") from None


def _caller(event: HttpEvent) -> Claims:
    try:
        claims = verify(event.bearer())
    except AuthError as exc:
        raise ApiError(401, f"Unauthorized: {exc}") from None
    if claims.role == "anon":
        raise ApiError(401, "Unauthorized: notifications are per user; sign in, the anon key "
                            "is not enough")
    return claims


def _user_id(claims: Claims) -> UUID:
    try:
        return UUID(claims.sub or "")
    except ValueError:
        raise ApiError(401, "Unauthorized: the JWT names no user (sub is not a UUID)") from None


def _user(event: HttpEvent) -> Claims:
    """The claims of a signed-in user: the inbox routes act for one."""
    claims = _caller(event)
    if claims.role != "authenticated":
        raise ApiError(403, "Forbidden: the inbox belongs to a user; call it with the user's JWT, "
                            "not the service_role key")
    _user_id(claims)
    return claims


# -- database -----------------------------------------------------------------------------------
@contextmanager
def _acting_as(claims: dict[str, Any]) -> Iterator[Callable[..., list]]:
    """A transaction whose statements run as ``claims["role"]``, RLS and all."""
    db = database()
    with db.transaction() as conn:
        db.execute(conn, ACT_AS, {"role": claims["role"], "claims": codec.dumps(claims),
                                  "sub": str(claims.get("sub") or "")})
        yield lambda sql, params=None: db.execute(conn, sql, params)


SERVICE = {"role": "service_role"}


# -- endpoints ----------------------------------------------------------------------------------
def list_notifications(event: HttpEvent, params: dict[str, str]) -> dict:
    """200 ``NotificationPage``: the caller's notifications, newest first."""
    claims = _user(event)
    query: ListQuery = _query(ListQuery, event)
    try:
        after = decode_cursor(query.cursor) if query.cursor else None
    except ValueError as exc:
        raise ApiError(400, f"Bad Request: {exc}",
                       [{"field": "query.cursor", "message": str(exc)}]) from None
    sql, values = page_statement(query, after)
    with _acting_as(claims.raw) as run:
        rows = run(sql, values)
    items = [NotificationItem.model_validate(r) for r in rows[:query.limit]]
    more = len(rows) > query.limit
    page = NotificationPage(items=items, next_cursor=encode_cursor(
        Cursor(items[-1].created_at, items[-1].id)) if more else None)
    return json_response(200, page.model_dump(mode="json"))


def create_notification(event: HttpEvent, params: dict[str, str]) -> dict:
    """201 ``CreatedNotification``, for the service_role key or an admin of its organization."""
    claims = _caller(event)
    new: NotificationRequest = _body(NotificationRequest, event)
    caller = None if claims.role == "service_role" else _user_id(claims)
    if caller is not None and new.organization_id is None:
        raise ApiError(403, "Forbidden: only the service_role key or an admin of the "
                            "notification's organization_id may create notifications")
    fields = new.model_dump()
    fields["data"] = codec.dumps(fields["data"])
    try:
        with _acting_as(SERVICE) as run:
            if caller is not None:
                may = run(MAY_NOTIFY, {"caller": caller, "org": new.organization_id,
                                       "target": new.user_id})[0]
                if not may["admin"]:
                    raise ApiError(403, "Forbidden: only an admin of the organization may notify "
                                        "its members")
                if not may["member"]:
                    raise ApiError(403, "Forbidden: user_id is not a member of the organization")
            row = run(INSERT, fields)[0]
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        detail = (exc.diag.message_primary or "rejected by the database").rstrip(".")
        raise ApiError(422, f"Unprocessable: {detail}") from None
    return json_response(201, CreatedNotification.model_validate(row).model_dump(mode="json"))


def update_notification(event: HttpEvent, params: dict[str, str]) -> dict:
    """200 ``NotificationItem`` with ``read_at`` set (kept if already read) or cleared."""
    claims = _user(event)
    id_ = _notification_id(params)
    update: ReadUpdate = _body(ReadUpdate, event)
    with _acting_as(claims.raw) as run:
        rows = run(MARK, {"read": update.read, "id": id_})
    if not rows:
        raise ApiError(404, f"Not Found: no notification {id_} in your inbox")
    return json_response(200, NotificationItem.model_validate(rows[0]).model_dump(mode="json"))


def delete_notification(event: HttpEvent, params: dict[str, str]) -> dict:
    """204 once the caller's notification is deleted."""
    claims = _user(event)
    id_ = _notification_id(params)
    with _acting_as(claims.raw) as run:
        rows = run(DELETE, (id_,))
    if not rows:
        raise ApiError(404, f"Not Found: no notification {id_} in your inbox")
    return response(204)


def mark_all_read(event: HttpEvent, params: dict[str, str]) -> dict:
    """200 ``MarkedRead``: how many of the caller's unread notifications are now read."""
    claims = _user(event)
    with _acting_as(claims.raw) as run:
        updated = run(MARK_ALL)[0]["updated"]
    return json_response(200, MarkedRead(updated=updated).model_dump())


def _token(event: HttpEvent) -> tuple[str, UnsubscribeRequest]:
    """The event's token and the opt-out it asks for; InvalidToken if it is missing or bad."""
    try:
        query = UnsubscribeQuery.model_validate(event.queryStringParameters or {})
    except ValidationError:
        raise InvalidToken("the link has no token") from None
    return query.token, read_token(query.token, _secret(),
                                   max_age_seconds=UNSUBSCRIBE_MAX_AGE.total_seconds())


def _unsubscribe(event: HttpEvent) -> Unsubscribed:
    """Record the opt-out the event's token asks for; InvalidToken if it is missing or bad."""
    _, request = _token(event)
    with _acting_as(SERVICE) as run:
        run(UNSUBSCRIBE, (request.user_id, request.type, request.channel))
    return Unsubscribed(type=request.type, channel=request.channel)


def _invalid_link(exc: InvalidToken) -> dict:
    return html_page(400, "Unsubscribe link not valid", f"This unsubscribe link cannot be used: {exc}.")


def unsubscribe_page(event: HttpEvent, params: dict[str, str]) -> dict:
    """200 HTML asking to confirm the opt-out; 400 HTML for a missing, bad or expired token.

    Following the link changes nothing: mail scanners and link previews fetch links on their
    own. The page's button posts the same one-click form a mailbox provider would.
    """
    try:
        token, request = _token(event)
    except InvalidToken as exc:
        return _invalid_link(exc)
    return html_page(200, "Unsubscribe", confirm_text(request.type, request.channel),
                     button=("Unsubscribe", urlencode({"token": token})))


def unsubscribe_one_click(event: HttpEvent, params: dict[str, str]) -> dict:
    """200 ``Unsubscribed`` for RFC 8058's ``List-Unsubscribe=One-Click`` POST."""
    try:
        OneClick.model_validate(form_fields(event.header("content-type"), event.text()))
    except ValidationError:
        raise ApiError(400, "Bad Request: a one-click unsubscribe posts the form field "
                            "List-Unsubscribe=One-Click") from None
    browser = "text/html" in (event.header("accept") or "")
    try:
        done = _unsubscribe(event)
    except InvalidToken as exc:
        if browser:
            return _invalid_link(exc)
        raise ApiError(400, f"Bad Request: {exc}") from None
    if browser:  # the confirmation page's button
        return html_page(200, "Unsubscribed", unsubscribed_text(done.type, done.channel))
    return json_response(200, done.model_dump())


def openapi_document(event: HttpEvent, params: dict[str, str]) -> dict:
    """200: the OpenAPI 3.1 document of every route."""
    return json_response(200, _document())


# -- routing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """An operation and the endpoint serving it; ``pattern`` matches its path."""

    operation: Operation
    endpoint: Callable[[HttpEvent, dict[str, str]], dict]

    @property
    def pattern(self) -> re.Pattern:
        return _pattern(self.operation.path)


@cache
def _pattern(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


BAD_REQUEST = Reply(400, "Malformed JSON or query parameters", ErrorBody)
UNAUTHORIZED = Reply(401, "Missing, invalid or expired JWT, or the anon key", ErrorBody)
NOT_USER = Reply(403, "Not a user's JWT (the service_role key has no inbox)", ErrorBody)
UNPROCESSABLE = Reply(422, "The body does not validate; `errors` lists each field", ErrorBody)
NOT_FOUND = Reply(404, "No such notification in the caller's inbox", ErrorBody)

ROUTES: tuple[Route, ...] = (
    Route(Operation("GET", "/api/notifications", "listNotifications",
                    "The caller's notifications, newest first, a page at a time",
                    (Reply(200, "One page", NotificationPage), BAD_REQUEST, UNAUTHORIZED, NOT_USER),
                    query=ListQuery), list_notifications),
    Route(Operation("POST", "/api/notifications", "createNotification",
                    "Create a notification (service_role key, or an admin of its organization)",
                    (Reply(201, "Created", CreatedNotification), BAD_REQUEST, UNAUTHORIZED,
                     Reply(403, "Neither the service_role key nor an admin of the organization",
                           ErrorBody), UNPROCESSABLE),
                    body=NotificationRequest), create_notification),
    Route(Operation("POST", "/api/notifications/mark-all-read", "markAllNotificationsRead",
                    "Mark every unread notification of the caller read",
                    (Reply(200, "How many were marked", MarkedRead), UNAUTHORIZED, NOT_USER)),
          mark_all_read),
    Route(Operation("PATCH", "/api/notifications/{id}", "updateNotification",
                    "Mark one of the caller's notifications read or unread",
                    (Reply(200, "The updated notification", NotificationItem), BAD_REQUEST,
                     UNAUTHORIZED, NOT_USER, NOT_FOUND, UNPROCESSABLE),
                    body=ReadUpdate), update_notification),
    Route(Operation("DELETE", "/api/notifications/{id}", "deleteNotification",
                    "Delete one of the caller's notifications",
                    (Reply(204, "Deleted"), UNAUTHORIZED, NOT_USER, NOT_FOUND)),
          delete_notification),
    Route(Operation("GET", "/api/unsubscribe", "unsubscribe",
                    "Follow an email's unsubscribe link: a page asking to confirm the opt-out "
                    "(following the link alone changes nothing)",
                    (Reply(200, "Confirmation page", media_type="text/html"),
                     Reply(400, "Missing, invalid or expired token", media_type="text/html")),
                    auth=False, query=UnsubscribeQuery), unsubscribe_page),
    Route(Operation("POST", "/api/unsubscribe", "unsubscribeOneClick",
                    "RFC 8058 one-click unsubscribe, as mailbox providers post it (and the "
                    "confirmation page's button, answered in HTML when the request accepts it)",
                    (Reply(200, "The recorded opt-out", Unsubscribed),
                     Reply(400, "Missing, invalid or expired token, or not the one-click form",
                           ErrorBody)),
                    auth=False, query=UnsubscribeQuery, body=OneClick,
                    body_media_types=("application/x-www-form-urlencoded", "multipart/form-data")),
          unsubscribe_one_click),
    Route(Operation("GET", "/api/openapi.json", "openapi", "This document",
                    (Reply(200, "The OpenAPI 3.1 document"),), auth=False), openapi_document),
)


@lru_cache(maxsize=1)
def _document() -> dict:
    return document(route.operation for route in ROUTES)


def match(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` and ``path`` and its path parameters; ApiError 404 or 405."""
    allowed = []
    for route in routes:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.operation.method == method:
            return route, found.groupdict()
        allowed.append(route.operation.method)
    if not allowed:
        raise ApiError(404, f"Not Found: no route {method} {path}")
    allow = ", ".join(sorted(set(allowed)))
    raise ApiError(405, f"Method Not Allowed: {path} accepts {allow}", headers={"allow": allow})


def on_request(event: HttpEvent) -> dict:
    """The response to one request to ``/api/...``; bad input is a 4xx, never an exception."""
    try:
        route, params = match(ROUTES, _method(event), event.rawPath)
        return route.endpoint(event, params)
    except ApiError as exc:
        return exc.render()
