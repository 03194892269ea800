"""What the notifications REST API accepts and answers, and its OpenAPI 3.1 document.

The request and response models here are the ones ``ripple.notify.api`` validates and
serializes with, and ``document`` renders the API's route table through their
``model_json_schema``, so the published schema is the code's::

    doc = document([Operation("GET", "/api/notifications", "listNotifications", "List",
                              replies=(Reply(200, "A page", NotificationPage),), query=ListQuery)])
    doc["paths"]["/api/notifications"]["get"]["responses"]["200"]
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic.json_schema import models_json_schema

from ripple.notify.handler import NewNotification
from ripple.notify.models import Channel, Priority

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")
# Unsubscribe links carry the type, and their tokens hold at most 200 bytes of it.
_MAX_TYPE_BYTES = 200


# -- requests -----------------------------------------------------------------------------------
class ListQuery(BaseModel):
    """The query of ``GET /api/notifications``; every parameter is optional."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(None, min_length=1, description="Only notifications of this type.")
    read: Literal["true", "false"] | None = Field(
        None, description="`true`: only read notifications; `false`: only unread ones.")
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
                 *(self.role_target or ())]
        if any("\x00" in text for text in texts):
            raise ValueError("text fields must not contain NUL characters")
        return self


class ReadUpdate(BaseModel):
    """The body of ``PATCH /api/notifications/{id}``."""

    model_config = ConfigDict(extra="forbid")

    read: StrictBool = Field(description="`true` marks the notification read, `false` unread.")


class UnsubscribeQuery(BaseModel):
    """The query of an unsubscribe link; parameters other than ``token`` are ignored."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, description="The signed token of the unsubscribe link.")


class OneClick(BaseModel):
    """RFC 8058's one-click body, form-encoded (``application/x-www-form-urlencoded`` or
    ``multipart/form-data``)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    list_unsubscribe: Literal["One-Click"] = Field(alias="List-Unsubscribe")


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
    created_at: datetime


class CreatedNotification(NotificationItem):
    """A created notification, with its target: a user, or roles of an organization."""

    organization_id: UUID | None
    user_id: UUID | None
    role_target: list[str] | None


class NotificationPage(BaseModel):
    """Notifications newest first; ``next_cursor`` is null on the last page."""

    items: list[NotificationItem]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page.")


class MarkedRead(BaseModel):
    """How many unread notifications were marked read."""

    updated: int


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


# -- the document -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """One documented response; ``model`` None means no body (or text, see ``media_type``)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    """One route: method, path template (``{name}`` segments are UUIDs) and its contract."""

    method: str
    path: str
    operation_id: str
    summary: str
    replies: tuple[Reply, ...]
    auth: bool = True
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_media_types: tuple[str, ...] = ("application/json",)

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "A user's JWT (role `authenticated`, `sub` = user id), or the "
                              "service_role key where stated."},
    "apikey": {"type": "apiKey", "in": "header", "name": "apikey",
               "description": "The same JWT in an `apikey` header, as supabase-js sends it."},
}


def document(operations: Iterable[Operation], title: str = "Ripple notifications API",
             version: str = "1") -> dict:
    """The OpenAPI 3.1 document of ``operations``, models under ``components.schemas``."""
    operations = list(operations)
    wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for op in operations:
        pairs = [(op.body, "validation")] if op.body else []
        pairs += [(r.model, "serialization") for r in op.replies if r.model]
        wanted += [p for p in pairs if p not in wanted]
    refs, definitions = models_json_schema(wanted, ref_template=_REF)
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "The notification inbox of the signed-in user, creating "
                                "notifications, and one-click unsubscribe links."},
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {}),
                       "securitySchemes": SECURITY_SCHEMES},
    }


def _operation(op: Operation, refs: dict) -> dict:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                           "security": [{"bearer": []}, {"apikey": []}] if op.auth else []}
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "format": "uuid"}} for name in op.path_params]
    if op.query is not None:
        params += _query_params(op.query)
    if params:
        out["parameters"] = params
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        content = {media: {"schema": schema} for media in op.body_media_types}
        out["requestBody"] = {"required": True, "content": content}
    out["responses"] = {str(r.status): _reply(r, refs) for r in op.replies}
    return out


def _query_params(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        param = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        params.append({**param, "schema": _not_null(prop)})
    return params


def _not_null(schema: dict) -> dict:
    # An absent query parameter is how a client says "none": the schema has no null branch.
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        schema = {**branches[0], **rest}
    if schema.get("default", 0) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return schema


def _reply(reply: Reply, refs: dict) -> dict:
    out: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        out["content"] = {reply.media_type: {"schema": refs[(reply.model, "serialization")]}}
    elif reply.media_type != "application/json":
        out["content"] = {reply.media_type: {"schema": {"type": "string"}}}
    return out
