"""What the notifications REST API accepts and answers: the pydantic models its routes validate
requests with and serialize answers from, so the generated OpenAPI document is the code's::

    ListQuery.model_validate({"limit": "10"}).limit  # 10
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from ripple.notify.handler import NewNotification
from ripple.notify.models import Channel, Priority

# Unsubscribe links carry the type, and their tokens hold at most 200 bytes of it.
_MAX_TYPE_BYTES = 200


# -- requests -----------------------------------------------------------------------------------
class ListQuery(BaseModel):
    """The query of ``GET /api/notifications``; every parameter is optional."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(None, min_length=1, description="Only notifications of this type.")
    read: Literal["true", "false"] | None = Field(
        None, description="`true`: only read notifications; `false`: only unread ones.")
    seen: Literal["true", "false"] | None = Field(
        None, description="`true`: only seen notifications; `false`: only unseen ones.")
    archived: Literal["true", "false"] = Field(
        "false", description="`true`: the archive; `false` (the default): the inbox.")
    limit: int = Field(20, ge=1, le=100, description="Page size.")
    cursor: str | None = Field(None, min_length=1,
                               description="The `next_cursor` of the previous page.")

    @field_validator("type", "cursor")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @property
    def read_filter(self) -> bool | None:
        """True for read only, False for unread only, None for both."""
        return None if self.read is None else self.read == "true"

    @property
    def seen_filter(self) -> bool | None:
        """True for seen only, False for unseen only, None for both."""
        return None if self.seen is None else self.seen == "true"


class NotificationRequest(NewNotification):
    """A notification to create: one user (``user_id``) or roles within an organization."""

    @model_validator(mode="after")
    def _storable(self) -> NotificationRequest:
        if self.role_target is not None:
            if not self.role_target or not all(self.role_target):
                raise ValueError("role_target must list at least one role, none of them empty")
            if self.organization_id is None:
                raise ValueError("role_target needs an organization_id")
        if len(self.type.encode()) > _MAX_TYPE_BYTES:
            raise ValueError(f"type must be at most {_MAX_TYPE_BYTES} bytes of UTF-8")
        texts = [self.type, self.title, self.message, self.action_url or "",
                 self.cancel_key or "", *(self.role_target or ())]
        if any("\x00" in text for text in texts):
            raise ValueError("text fields must not contain NUL characters")
        return self


class CancelRequest(BaseModel):
    """The body of ``POST /api/notifications/cancel``."""

    model_config = ConfigDict(extra="forbid")

    cancel_key: str = Field(min_length=1, description="The notifications' `cancel_key`.")


class InboxUpdate(BaseModel):
    """The body of ``PATCH /api/notifications/{id}``: the states to set, at least one."""

    model_config = ConfigDict(extra="forbid")

    read: StrictBool | None = Field(None, description=(
        "`true` marks the notification read (and seen), `false` unread."))
    seen: StrictBool | None = Field(None, description="`true` marks it seen, `false` unseen.")
    archived: StrictBool | None = Field(None, description=(
        "`true` moves it to the archive, `false` back to the inbox."))

    @model_validator(mode="after")
    def _something(self) -> InboxUpdate:
        if self.read is None and self.seen is None and self.archived is None:
            raise ValueError("give at least one of read, seen and archived")
        return self


# -- responses ----------------------------------------------------------------------------------
class NotificationItem(BaseModel):
    """One message of a user's inbox."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    type: str
    title: str
    message: str
    priority: Priority
    delivery_method: list[Channel]
    action_url: str | None
    data: dict[str, Any]
    read_at: datetime | None
    seen_at: datetime | None
    archived_at: datetime | None
    created_at: datetime


class CreatedNotification(NotificationItem):
    """A created notification, with its target: a user, or roles of an organization."""

    organization_id: UUID | None
    user_id: UUID | None
    role_target: list[str] | None
    cancel_key: str | None = None


class Verdict(BaseModel):
    """What delivery decides for one recipient and channel, and why."""

    user_id: UUID
    channel: Channel
    decision: Literal["send", "digest", "skip", "defer", "suppress", "fail"]
    reason: str | None
    rule: str | None = Field(description="The rule that decided, where to change it.")
    address: str | None
    not_before: datetime | None
    target: str = Field(description="Why the user is a recipient: `user_id` or `role_target: <role>`.")
    recorded: dict[str, str | None] | None = Field(
        description="The delivery row's status and reason, once delivery has run.")


class Explanation(BaseModel):
    """A notification's verdicts; ``notification_id`` is null for a draft."""

    notification_id: UUID | None
    verdicts: list[Verdict]


class Cancellation(BaseModel):
    """What a cancellation withdrew: notifications newly cancelled, deliveries skipped."""

    notifications: int
    deliveries: int


class NotificationPage(BaseModel):
    """Notifications newest first; ``next_cursor`` is null on the last page."""

    items: list[NotificationItem]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page.")


class MarkedRead(BaseModel):
    """How many notifications a mark-all route changed."""

    updated: int


class BadgeCounts(BaseModel):
    """The caller's in-app notifications (archive excluded) not yet seen and not yet read."""

    unseen: int
    unread: int


class Unsubscribed(BaseModel):
    """The preference a one-click unsubscribe recorded (``type`` ``*``: every type)."""

    type: str
    channel: Channel


class FieldError(BaseModel):
    """One invalid input: where (``body.priority``, ``query.limit``; empty for the whole
    body) and why."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer: a message, and for invalid input the fields at fault."""

    message: str
    errors: list[FieldError] | None = None
