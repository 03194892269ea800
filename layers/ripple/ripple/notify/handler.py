"""The delivery function's entry: a wake-up from the outbox, a sweep, or a direct invoke."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ripple import codec
from ripple.budget import budget
from ripple.db import await_commit
from ripple.log import logger
from ripple.metrics import record_notify
from ripple.notify import webhooks
from ripple.notify.delivery import Report, courier
from ripple.notify.models import Channel

INSERT = """
insert into public.notifications (organization_id, user_id, role_target, type, title, message,
                                  priority, delivery_method, action_url, data, cancel_key)
values (%(organization_id)s, %(user_id)s, %(role_target)s, %(type)s, %(title)s, %(message)s,
        %(priority)s, %(delivery_method)s, %(action_url)s, %(data)s::jsonb, %(cancel_key)s)
returning id
"""


# Kept back from the invocation's remaining time: the notification in hand sends and records in it.
BUDGET_MARGIN_SECONDS = 10.0


class NewNotification(BaseModel):
    """A notification to create and deliver, as a direct invoke may carry it."""

    model_config = ConfigDict(extra="forbid")

    organization_id: UUID | None = None
    user_id: UUID | None = None
    role_target: list[str] | None = None
    type: str = Field(min_length=1)
    title: str = Field(min_length=1)
    message: str
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    delivery_method: list[Channel] = Field(default_factory=lambda: list[Channel](["in_app"]),
                                           min_length=1)
    action_url: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    cancel_key: str | None = Field(None, min_length=1, description=(
        "Withdraws every email/SMS not yet sent when cancelled: cancel_notifications(key) "
        "or POST /api/notifications/cancel."))

    @model_validator(mode="after")
    def _one_target(self) -> NewNotification:
        if (self.user_id is None) == (self.role_target is None):
            raise ValueError("exactly one of user_id and role_target is required")
        return self


class NotifyEvent(BaseModel):
    """`{"xid"}` from Postgres, `{"sweep": true}` from the schedule, or a direct invoke with
    `{"notification_id": ...}` or `{"notification": {...}}`."""

    xid: str | None = None
    sweep: bool = False
    notification_id: UUID | None = None
    notification: NewNotification | None = None


def on_event(event: NotifyEvent, context: Any = None) -> dict:
    """Deliver what the event names (or everything pending, within the invocation's remaining
    time) and report delivery statuses."""
    c = courier()
    report = Report()
    deadline = time.monotonic() + budget(context, margin=BUDGET_MARGIN_SECONDS, default=50.0)
    if event.notification is not None:
        fields = event.notification.model_dump()
        fields.update(organization_id=_text(fields["organization_id"]), user_id=_text(fields["user_id"]),
                      data=codec.dumps(fields["data"]))
        with c.db.transaction() as conn:
            created = c.db.execute(conn, INSERT, fields)[0]["id"]
        c.deliver(created, report)
    elif event.notification_id is not None:
        c.deliver(event.notification_id, report)
    else:
        if event.xid:
            await_commit(c.db, event.xid)
        c.drain(report, deadline=deadline)
        c.send_due(report, deadline=deadline)
    record_notify(report)
    result = asdict(report)
    try:
        # After the sends, so a slow or failing endpoint never holds one back.
        left = max(0.0, min(webhooks.BUDGET_SECONDS, deadline - time.monotonic()))
        result["webhooks"] = webhooks.send_due(c.db, max_attempts=c.config.webhook_max_attempts,
                                               budget_seconds=left)
    except Exception:
        logger.exception("webhook calls failed")
    busy = report.notifications or report.statuses or any(result.get("webhooks", {}).values())
    (logger.info if busy else logger.debug)("notify", extra=result)
    return result


def _text(value: UUID | None) -> str | None:
    return str(value) if value is not None else None
