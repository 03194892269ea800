"""The inbox routes of the REST API: a user's notifications, paged and marked, and creating
notifications (service_role, or an admin of the organization).

Inbox statements run as the caller, so RLS decides what a user sees, marks or deletes;
creating runs as service_role after ``create_notification`` has decided the caller may::

    app.include_router(inbox.router)
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import psycopg
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from ripple import codec
from ripple.events import HttpEvent
from ripple.notify.caller import SERVICE, Run, as_caller, caller, user, user_id
from ripple.notify.delivery import courier
from ripple.notify.exceptions import ApiError
from ripple.notify.explain import explain_draft, explain_stored
from ripple.notify.schemas import (
    BadgeCounts,
    Cancellation,
    CancelRequest,
    CreatedNotification,
    ErrorBody,
    Explanation,
    InboxUpdate,
    ListQuery,
    MarkedRead,
    NotificationItem,
    NotificationPage,
    NotificationRequest,
)

ITEM = ("id, type, title, message, priority, delivery_method, action_url, data, read_at, "
        "seen_at, archived_at, created_at")
CREATED = f"{ITEM}, organization_id, user_id, role_target, cancel_key"
INSERT = f"""
insert into public.notifications (organization_id, user_id, role_target, type, title, message,
                                  priority, delivery_method, action_url, data, cancel_key)
values (%(organization_id)s, %(user_id)s, %(role_target)s, %(type)s, %(title)s, %(message)s,
        %(priority)s, %(delivery_method)s, %(action_url)s, %(data)s::jsonb, %(cancel_key)s)
returning {CREATED}
"""
CANCEL = "select * from public.cancel_notifications(%s)"
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
# A state left out (null) keeps its time; reading also marks seen; setting one twice keeps
# the first time.
MARK = f"""
update public.notifications
set read_at = case when %(read)s::boolean is null then read_at
                   when %(read)s then coalesce(read_at, now()) end,
    seen_at = case when %(seen)s::boolean is not null
                   then case when %(seen)s then coalesce(seen_at, now()) end
                   when %(read)s then coalesce(seen_at, now()) else seen_at end,
    archived_at = case when %(archived)s::boolean is null then archived_at
                       when %(archived)s then coalesce(archived_at, now()) end
where id = %(id)s
returning {ITEM}
"""
DELETE = "delete from public.notifications where id = %s returning id"
# RLS already limits the updates to the caller's rows; the user_id term uses the user indexes.
MARK_ALL = {
    "read": "read_at = now(), seen_at = coalesce(seen_at, now()) where read_at is null",
    "seen": "seen_at = now() where seen_at is null",
    "archived": "archived_at = now() where archived_at is null",
}
MARK_ALL_STATEMENT = """
with marked as (
  update public.notifications set {change} and user_id = (select auth.uid())
  returning 1
)
select count(*)::integer as updated from marked
"""
COUNTS = """
select count(*) filter (where seen_at is null)::integer as unseen,
       count(*) filter (where read_at is null)::integer as unread
from public.notifications where archived_at is null and user_id = (select auth.uid())
"""

# The OpenAPI description of each route: who may call it and what it answers.
SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"apikey": []}]


def reply(description: str, model: type | None = None) -> OpenAPIResponse:
    """An OpenAPI response entry: ``description`` and, if given, ``model`` as its JSON body."""
    if model is None:
        return OpenAPIResponse(description=description)
    return OpenAPIResponse(description=description,
                           content={"application/json": {"model": model}})


BAD_REQUEST = reply("Malformed JSON or query parameters", ErrorBody)
UNAUTHORIZED = reply("Missing, invalid or expired JWT, or the anon key", ErrorBody)
NOT_USER = reply("Not a user's JWT (the service_role key has no inbox)", ErrorBody)
UNPROCESSABLE = reply("The body does not validate; `errors` lists each field", ErrorBody)
NOT_FOUND = reply("No such notification in the caller's inbox", ErrorBody)
NotificationId = Annotated[str, Path(description="A notification id (UUID).",
                                     json_schema_extra={"format": "uuid"})]

router = Router()


def event() -> HttpEvent:
    """The request being answered, as the typed event the auth helpers read."""
    return HttpEvent.model_validate(router.current_event.raw_event)


# -- pure: cursors, statements ------------------------------------------------------------------
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
    where: list[str] = []
    params: dict[str, Any] = {"limit": query.limit + 1}
    if query.type is not None:
        where.append("type = %(type)s")
        params["type"] = query.type
    if query.read_filter is not None:
        where.append("read_at is not null" if query.read_filter else "read_at is null")
    if query.seen_filter is not None:
        where.append("seen_at is not null" if query.seen_filter else "seen_at is null")
    where.append("archived_at is not null" if query.archived == "true" else "archived_at is null")
    if after is not None:
        where.append("(created_at, id) < (%(after_at)s, %(after_id)s)")
        params.update(after_at=after.created_at, after_id=after.id)
    return (f"select {ITEM} from public.notifications where {' and '.join(where)} "
            "order by created_at desc, id desc limit %(limit)s"), params


def notification_id(text: str) -> UUID:
    """The id of a path; ApiError 404 for anything but a UUID (no such notification)."""
    try:
        return UUID(text)
    except ValueError:
        raise ApiError(404, "Not Found: a notification id is a UUID") from None


def _unknown_query(model: type[ListQuery], given: dict[str, str] | None) -> None:
    # Powertools hands a model parameter only the model's fields: refuse the others here, as
    # the model (extra="forbid") would.
    extra = sorted(set(given or {}) - set(model.model_fields))
    if extra:
        errors = [{"field": f"query.{name}", "message": "Extra inputs are not permitted"}
                  for name in extra]
        raise ApiError(400, "Bad Request: " + "; ".join(f"{e['field']}: {e['message']}"
                                                        for e in errors), errors)


# -- routes -------------------------------------------------------------------------------------
@router.get("/api/notifications", operation_id="listNotifications",
            summary="The caller's notifications, newest first, a page at a time",
            security=SECURED, response_description="One page",
            responses={400: BAD_REQUEST, 401: UNAUTHORIZED, 403: NOT_USER})
def list_notifications(query: Annotated[ListQuery, Query()]) -> NotificationPage:
    """200 ``NotificationPage``: the caller's notifications, newest first."""
    claims = user(event())
    _unknown_query(ListQuery, router.current_event.query_string_parameters)
    try:
        after = decode_cursor(query.cursor) if query.cursor else None
    except ValueError as exc:
        raise ApiError(400, f"Bad Request: {exc}",
                       [{"field": "query.cursor", "message": str(exc)}]) from None
    sql, values = page_statement(query, after)
    rows = as_caller(claims.raw, lambda run: run(sql, values))
    items = [NotificationItem.model_validate(r) for r in rows[:query.limit]]
    more = len(rows) > query.limit
    return NotificationPage(items=items, next_cursor=encode_cursor(
        Cursor(items[-1].created_at, items[-1].id)) if more else None)


@router.post("/api/notifications", operation_id="createNotification", status_code=201,
             summary="Create a notification (service_role key, or an admin of its organization)",
             security=SECURED, response_description="Created",
             responses={400: BAD_REQUEST, 401: UNAUTHORIZED,
                        403: reply("Neither the service_role key nor an admin of the "
                                    "organization", ErrorBody), 422: UNPROCESSABLE})
def create_notification(new: Annotated[NotificationRequest, Body()]) -> CreatedNotification:
    """201 ``CreatedNotification``, for the service_role key or an admin of its organization."""
    claims = caller(event())
    by = None if claims.role == "service_role" else user_id(claims)
    if by is not None and new.organization_id is None:
        raise ApiError(403, "Forbidden: only the service_role key or an admin of the "
                            "notification's organization_id may create notifications")
    fields = new.model_dump()
    fields["data"] = codec.dumps(fields["data"])

    def insert(run: Run) -> dict:
        if by is not None:
            may = run(MAY_NOTIFY, {"caller": by, "org": new.organization_id,
                                   "target": new.user_id})[0]
            if not may["admin"]:
                raise ApiError(403, "Forbidden: only an admin of the organization may notify "
                                    "its members")
            if not may["member"]:
                raise ApiError(403, "Forbidden: user_id is not a member of the organization")
        return run(INSERT, fields)[0]

    try:
        row = as_caller(SERVICE, insert)
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        detail = (exc.diag.message_primary or "rejected by the database").rstrip(".")
        raise ApiError(422, f"Unprocessable: {detail}") from None
    return CreatedNotification.model_validate(row)


def _mark_all(state: str) -> MarkedRead:
    claims = user(event())
    sql = MARK_ALL_STATEMENT.format(change=MARK_ALL[state])
    return MarkedRead(updated=as_caller(claims.raw, lambda run: run(sql))[0]["updated"])


@router.post("/api/notifications/mark-all-read", operation_id="markAllNotificationsRead",
             summary="Mark every unread notification of the caller read (and seen)",
             security=SECURED, response_description="How many were marked",
             responses={401: UNAUTHORIZED, 403: NOT_USER})
def mark_all_read() -> MarkedRead:
    """200 ``MarkedRead``: how many of the caller's unread notifications are now read."""
    return _mark_all("read")


@router.post("/api/notifications/mark-all-seen", operation_id="markAllNotificationsSeen",
             summary="Mark every unseen notification of the caller seen (the badge's reset)",
             security=SECURED, response_description="How many were marked",
             responses={401: UNAUTHORIZED, 403: NOT_USER})
def mark_all_seen() -> MarkedRead:
    """200 ``MarkedRead``: how many of the caller's unseen notifications are now seen."""
    return _mark_all("seen")


@router.post("/api/notifications/mark-all-archived", operation_id="archiveAllNotifications",
             summary="Move every notification of the caller's inbox to the archive",
             security=SECURED, response_description="How many were archived",
             responses={401: UNAUTHORIZED, 403: NOT_USER})
def mark_all_archived() -> MarkedRead:
    """200 ``MarkedRead``: how many of the caller's notifications are now archived."""
    return _mark_all("archived")


@router.get("/api/notifications/counts", operation_id="countNotifications",
            summary="The caller's badge counts: unseen and unread notifications of the inbox",
            security=SECURED, response_description="The counts",
            responses={401: UNAUTHORIZED, 403: NOT_USER})
def counts() -> BadgeCounts:
    """200 ``BadgeCounts``; the same numbers ``notification_badges`` pushes live."""
    claims = user(event())
    return BadgeCounts.model_validate(as_caller(claims.raw, lambda run: run(COUNTS))[0])


@router.post("/api/notifications/cancel", operation_id="cancelNotifications",
             summary="Withdraw every email/SMS not yet sent of the notifications with a "
                     "cancel_key (service_role key)", security=SECURED,
             response_description="How many notifications and deliveries were withdrawn",
             responses={400: BAD_REQUEST, 401: UNAUTHORIZED,
                        403: reply("Not the service_role key", ErrorBody), 422: UNPROCESSABLE})
def cancel_notifications(cancel: Annotated[CancelRequest, Body()]) -> Cancellation:
    """200 ``Cancellation``: deferred deliveries become skipped / cancelled, and deliveries
    not planned yet are skipped when they are."""
    if caller(event()).role != "service_role":
        raise ApiError(403, "Forbidden: only the service_role key may cancel notifications")
    found = as_caller(SERVICE, lambda run: run(CANCEL, (cancel.cancel_key,)))
    return Cancellation.model_validate(found[0])


def _service() -> None:
    if caller(event()).role != "service_role":
        raise ApiError(403, "Forbidden: only the service_role key may explain notifications")


@router.get("/api/notifications/<id>/explain", operation_id="explainNotification",
            summary="Each recipient and channel of a notification: what delivery decides now, "
                    "the rule that decides it, and what was recorded (service_role key)",
            security=SECURED, response_description="The verdicts",
            responses={401: UNAUTHORIZED, 403: reply("Not the service_role key", ErrorBody),
                       404: reply("No such original notification", ErrorBody)})
def explain_notification(id: NotificationId) -> Explanation:
    """200 ``Explanation`` of a stored original notification (a copy's parent explains it)."""
    _service()
    id_ = notification_id(id)
    found = explain_stored(courier(), id_)
    if found is None:
        raise ApiError(404, f"Not Found: no original notification {id_}")
    return Explanation.model_validate({"notification_id": id_, "verdicts": found})


@router.post("/api/notifications/explain", operation_id="explainDraft",
             summary="The verdicts a notification would get, without creating it "
                     "(service_role key)", security=SECURED, response_description="The verdicts",
             responses={400: BAD_REQUEST, 401: UNAUTHORIZED,
                        403: reply("Not the service_role key", ErrorBody), 422: UNPROCESSABLE})
def explain_new(draft: Annotated[NotificationRequest, Body()]) -> Explanation:
    """200 ``Explanation`` of a draft: planned in a transaction that is rolled back."""
    _service()
    fields = draft.model_dump()
    try:
        found = explain_draft(courier(), fields)
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        detail = (exc.diag.message_primary or "rejected by the database").rstrip(".")
        raise ApiError(422, f"Unprocessable: {detail}") from None
    return Explanation.model_validate({"notification_id": None, "verdicts": found})


@router.patch("/api/notifications/<id>", operation_id="updateNotification",
              summary="Mark one of the caller's notifications read, unread, seen, unseen, "
                      "archived or back in the inbox", security=SECURED,
              response_description="The updated notification",
              responses={400: BAD_REQUEST, 401: UNAUTHORIZED, 403: NOT_USER, 404: NOT_FOUND,
                         422: UNPROCESSABLE})
def update_notification(id: NotificationId,
                        update: Annotated[InboxUpdate, Body()]) -> NotificationItem:
    """200 ``NotificationItem`` with the states asked for set (a time kept if already set) or
    cleared."""
    claims = user(event())
    id_ = notification_id(id)
    rows = as_caller(claims.raw, lambda run: run(MARK, {**update.model_dump(), "id": id_}))
    if not rows:
        raise ApiError(404, f"Not Found: no notification {id_} in your inbox")
    return NotificationItem.model_validate(rows[0])


@router.delete("/api/notifications/<id>", operation_id="deleteNotification",
               summary="Delete one of the caller's notifications", security=SECURED,
               responses={204: reply("Deleted"), 401: UNAUTHORIZED, 403: NOT_USER,
                          404: NOT_FOUND})
def delete_notification(id: NotificationId):  # 204: no body to validate
    """204 once the caller's notification is deleted."""
    claims = user(event())
    id_ = notification_id(id)
    rows = as_caller(claims.raw, lambda run: run(DELETE, (id_,)))
    if not rows:
        raise ApiError(404, f"Not Found: no notification {id_} in your inbox")
    return Response(status_code=204)
