"""Typed models of notification delivery: what is sent, to whom, under which rules, and the plan.

The input models read rows as the IO module loads them (extra columns are ignored), so a
``notifications`` row becomes a ``Notification`` with ``Notification.model_validate(row)``.
All models are immutable.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Literal, TypeAlias
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from ripple.notify import sms

Priority: TypeAlias = Literal["low", "normal", "high", "urgent"]
Channel: TypeAlias = Literal["in_app", "email", "sms"]
# The channels that need a send; in_app needs none, the notification row is the message.
DeliveryChannel: TypeAlias = Literal["email", "sms"]
DELIVERY_CHANNELS: tuple[DeliveryChannel, ...] = ("email", "sms")

Action: TypeAlias = Literal["send", "skip", "defer", "suppress", "fail"]
Reason: TypeAlias = Literal[
    "sms_requires_high_priority",  # skip: SMS is kept for the priorities in RoutingConfig
    "opted_out",                   # skip: the recipient disabled this type or channel
    "not_opted_in",                # skip: an opt-in channel without an enabling preference
    "quiet_hours",                 # defer: inside the recipient's quiet window
    "suppressed",                  # suppress: the address is on the suppression list
    "no_email_address",            # fail: the recipient has no email
    "invalid_email",               # fail: the email is not an address
    "no_phone_number",             # fail: the recipient has no phone
    "invalid_phone",               # fail: not a valid number (see routing.normalize_phone)
    "cancelled",                   # skip: the notification was cancelled by its cancel_key
    "read_in_app",                 # skip: the in-app copy was read before escalation was due
    "throttled",                   # skip: the type's throttle_limit was reached in its window
    "escalation",                  # defer: waiting for the in-app copy to be read
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Notification(_Model):
    """One notification: the in-app message, and the source of its email/SMS deliveries."""

    id: UUID
    organization_id: UUID | None = None
    user_id: UUID | None = None
    role_target: list[str] | None = None
    type: str
    title: str
    message: str
    priority: Priority = "normal"
    delivery_method: list[Channel] = Field(default_factory=lambda: list[Channel](["in_app"]))
    action_url: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    cancel_key: str | None = None
    cancelled_at: datetime | None = None


class DeliveryRule(_Model):
    """What a ``notification_rules`` row asks of one type's email/SMS (see that table).

    - ``escalate_after``: in-app first; email/SMS only if still unread this long after the
      notification was created;
    - ``throttle_limit`` per ``throttle_window``: sends per recipient and channel of the type;
    - ``digest_window``, ``digest_key``: sends wait and go out as one per batch (``digest``).
    """

    escalate_after: timedelta | None = None
    throttle_limit: int | None = Field(default=None, gt=0)
    throttle_window: timedelta | None = None
    digest_window: timedelta | None = None
    digest_key: str | None = None


class Recipient(_Model):
    """A user the notification is for, with the addresses and locale it is delivered with.

    ``email`` and ``phone`` are as stored; routing normalizes and validates them.
    ``timezone`` is an IANA name; an unknown name reads as UTC rather than failing delivery.
    """

    user_id: UUID
    organization_id: UUID | None = None
    role: str | None = None
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str = "en"
    timezone: str = "UTC"

    @field_validator("locale", "timezone", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: Any) -> Any:
        # A profiles table without the column yields NULL; that means the default, not an error.
        return cls.model_fields[info.field_name].default if value is None else value


class Preference(_Model):
    """Whether a user wants notifications of ``type`` (or ``'*'``: every type) on ``channel``."""

    type: str
    channel: Channel
    enabled: bool


class QuietHours(_Model):
    """A daily window, in local wall-clock time, during which email and SMS wait.

    ``start`` is inclusive and ``end`` exclusive; ``start > end`` crosses midnight
    (22:00–07:00). No window when either bound is missing or they are equal. ``timezone``
    (IANA) falls back to the recipient's when missing or unknown. A ``notification_settings``
    row validates as is.
    """

    # Also read from a notification_settings row (quiet_hours_start, quiet_hours_end).
    start: time | None = Field(None, validation_alias=AliasChoices("start", "quiet_hours_start"))
    end: time | None = Field(None, validation_alias=AliasChoices("end", "quiet_hours_end"))
    timezone: str | None = None


class RoutingConfig(_Model):
    """The rules ``routing.plan`` applies that an application may tune.

    - ``sms_priorities``: priorities that may go out by SMS (text messages cost money and
      interrupt, so by default only high and urgent);
    - ``quiet_hours_bypass``: priorities delivered even inside quiet hours;
    - ``opt_in_channels``: channels that stay off until the user enables them with a
      preference (where SMS needs prior consent); other channels are on unless disabled;
    - ``default_region``: the country (ISO 3166 alpha-2) of phone numbers stored without a
      ``+``; None refuses such numbers.
    """

    sms_priorities: frozenset[Priority] = frozenset({"high", "urgent"})
    quiet_hours_bypass: frozenset[Priority] = frozenset({"urgent"})
    opt_in_channels: frozenset[DeliveryChannel] = frozenset()
    default_region: str | None = None

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        import phonenumbers

        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (ISO 3166 alpha-2)")
        return value.upper() if value else None


class Decision(_Model):
    """What to do about one (recipient, channel) of a notification.

    - ``send``: deliver now to ``address``;
    - ``defer``: deliver at ``not_before`` (UTC), when the recipient's quiet hours end;
    - ``skip``: not wanted (preferences or priority rules); final, not an error;
    - ``suppress``: ``address`` is on the suppression list; final;
    - ``fail``: no usable address; final, an error in the recipient's data.

    ``address`` is the normalized email (lowercased) or E.164 phone whenever one could be
    resolved, so a skipped or deferred decision still says where it would have gone.
    """

    recipient: Recipient
    channel: DeliveryChannel
    action: Action
    reason: Reason | None = None
    address: str | None = None
    not_before: datetime | None = None

    @property
    def user_id(self) -> UUID:
        return self.recipient.user_id


class RenderedEmail(_Model):
    """An email ready for SESv2 ``Content.Simple``: one-line subject, HTML and text parts."""

    subject: str
    html: str
    text: str


class RenderedSms(_Model):
    """An SMS body, as rendered (see ``sms.fit`` to bound its length)."""

    body: str

    @property
    def segments(self) -> int:
        """How many SMS parts the body is sent as."""
        return sms.segments(self.body)


class UnsubscribeRequest(_Model):
    """What a valid unsubscribe token asks: stop ``type`` (``'*'``: every type) on ``channel``."""

    user_id: UUID
    type: str
    channel: Channel
    issued_at: datetime


# A notification's plan: its decisions in recipient order, email before SMS per recipient.
Plan: TypeAlias = list[Decision]
