"""Routing: for each recipient and each requested email/SMS channel, what to do and where.

``plan`` applies, in this order, the first rule that stops a delivery:

1. the channel is in the notification's ``delivery_method`` (others get no decision at all:
   they were never asked for, so there is nothing to record);
2. a cancelled notification (``cancel_notifications(key)``) → skip ``cancelled``;
3. SMS goes out only for ``config.sms_priorities`` (high and urgent by default) → skip;
4. preferences: a row for the notification's type beats a ``'*'`` row for the channel;
   disabled → skip ``opted_out``; no row → on, unless the channel is in
   ``config.opt_in_channels`` → skip ``not_opted_in``. Opt-outs hold even for urgent;
5. the address: missing or malformed → fail (an error in the recipient's data);
6. the suppression list → suppress;
7. the rule's escalation, once the recipient has read the in-app copy → skip ``read_in_app``;
8. the rule's throttle: ``throttle_limit`` sends of the type on the channel within
   ``throttle_window`` already → skip ``throttled``;
9. quiet hours, unless the priority is in ``config.quiet_hours_bypass`` (urgent) → defer
   until the window ends;
10. the rule's escalation, before ``created_at + escalate_after`` → defer ``escalation``
    until then (the sweep plans it again when due).

Final outcomes come before ``defer`` so nothing is deferred that could never be sent.

Typical use::

    decisions = plan(notification, recipients, preferences={user_id: [Preference(...)]},
                     quiet={user_id: QuietHours(start=time(22), end=time(7))},
                     suppressed={"bounced@example.com"}, now=datetime.now(timezone.utc),
                     config=RoutingConfig())
    for d in decisions:
        if d.action == "send": ...          # render and send to d.address
        elif d.action == "defer": ...       # schedule at d.not_before
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from ripple.notify.models import (
    DELIVERY_CHANNELS,
    Action,
    Decision,
    DeliveryChannel,
    DeliveryRule,
    Notification,
    Plan,
    Preference,
    QuietHours,
    Reason,
    Recipient,
    RoutingConfig,
)

UTC = UTC
DEFAULT_CONFIG = RoutingConfig()
NO_RULE = DeliveryRule()
T = TypeVar("T")


def plan(
    notification: Notification,
    recipients: Iterable[Recipient],
    preferences: Mapping[UUID, Sequence[Preference]],
    quiet: Mapping[UUID, QuietHours],
    suppressed: Iterable[str],
    now: datetime,
    config: RoutingConfig = DEFAULT_CONFIG,
    rule: DeliveryRule = NO_RULE,
    recent_sends: Mapping[tuple[UUID, str], int] | None = None,
    read: Collection[UUID] = (),
) -> Plan:
    """One ``Decision`` per (recipient, requested channel among email and SMS).

    Recipients are taken in order; a user listed twice (in two targeted roles, say) is
    planned once, so the decisions can key deliveries by (notification, user, channel).
    ``preferences`` and ``quiet`` are keyed by user id (UUIDs, or their text); ``suppressed``
    holds emails and phone numbers in any accepted spelling. ``now`` must be
    timezone-aware; ``not_before`` of a deferral is in UTC. ``rule`` is the type's
    ``notification_rules`` row; ``recent_sends`` counts, per (user, channel), the sends of the
    type inside the rule's throttle window; ``read`` holds the users who read the in-app copy.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    channels = [c for c in DELIVERY_CHANNELS if c in notification.delivery_method]
    if not channels:
        return []
    blocked = _normalized_addresses(suppressed)
    preferences, quiet = _by_user(preferences), _by_user(quiet)
    decisions: Plan = []
    context = _Context(rule, recent_sends or {}, frozenset(read))
    seen: set[UUID] = set()
    for recipient in recipients:
        if recipient.user_id in seen:
            continue
        seen.add(recipient.user_id)
        rows = preferences.get(recipient.user_id, ())
        window = quiet.get(recipient.user_id)
        for channel in channels:
            decisions.append(
                _decide(notification, recipient, channel, rows, window, blocked, now, config,
                        context))
    return decisions


@dataclass(frozen=True)
class _Context:
    rule: DeliveryRule
    recent_sends: Mapping[tuple[UUID, str], int]
    read: frozenset[UUID]

    def escalates(self, notification: Notification) -> bool:
        return self.rule.escalate_after is not None and "in_app" in notification.delivery_method


# What a stage of the rules answers when it stops a delivery: action, reason, not_before.
_Stop = tuple[Action, Reason, datetime | None]


def _decide(notification: Notification, recipient: Recipient, channel: DeliveryChannel,
            rows: Sequence[Preference], window: QuietHours | None, blocked: frozenset[str],
            now: datetime, config: RoutingConfig, context: _Context) -> Decision:
    address, problem = _address(recipient, channel, config.default_region)
    stop = (_wanted(notification, channel, rows, config)
            or (("fail", problem, None) if problem is not None else None)
            or (("suppress", "suppressed", None) if address in blocked else None)
            or _rules(notification, recipient, channel, context)
            or _timing(notification, recipient, window, now, config, context))
    action, reason, not_before = stop or ("send", None, None)
    return Decision(recipient=recipient, channel=channel, action=action, reason=reason,
                    address=address, not_before=not_before)


def _wanted(notification: Notification, channel: DeliveryChannel, rows: Sequence[Preference],
            config: RoutingConfig) -> _Stop | None:
    """Cancelled, SMS priority, preferences: whether the delivery is wanted at all."""
    if notification.cancelled_at is not None:
        return "skip", "cancelled", None
    if channel == "sms" and notification.priority not in config.sms_priorities:
        return "skip", "sms_requires_high_priority", None
    chosen = preference_for(rows, notification.type, channel)
    if chosen is None and channel in config.opt_in_channels:
        return "skip", "not_opted_in", None
    if chosen is not None and not chosen.enabled:
        return "skip", "opted_out", None
    return None


def _rules(notification: Notification, recipient: Recipient, channel: DeliveryChannel,
           context: _Context) -> _Stop | None:
    """The type's rule: escalation already answered by a read, and its throttle."""
    if context.escalates(notification) and recipient.user_id in context.read:
        return "skip", "read_in_app", None
    limit = context.rule.throttle_limit
    if limit is not None and context.recent_sends.get((recipient.user_id, channel), 0) >= limit:
        return "skip", "throttled", None
    return None


def _timing(notification: Notification, recipient: Recipient, window: QuietHours | None,
            now: datetime, config: RoutingConfig, context: _Context) -> _Stop | None:
    """Quiet hours, then a pending escalation: when the delivery may go."""
    if window is not None and notification.priority not in config.quiet_hours_bypass:
        until = quiet_until(window, recipient.timezone, now)
        if until is not None:
            return "defer", "quiet_hours", until
    delay = context.rule.escalate_after
    if context.escalates(notification) and delay is not None:
        due = notification.created_at.astimezone(UTC) + delay
        if now < due:
            return "defer", "escalation", due
    return None


def _address(recipient: Recipient, channel: DeliveryChannel,
             default_region: str | None = None) -> tuple[str | None, Reason | None]:
    """The normalized address for ``channel`` and, when unusable, the failure reason."""
    if channel == "email":
        if not recipient.email or not recipient.email.strip():
            return None, "no_email_address"
        email = normalize_email(recipient.email)
        return (email, None) if email else (None, "invalid_email")
    if not recipient.phone or not recipient.phone.strip():
        return None, "no_phone_number"
    phone = normalize_phone(recipient.phone, default_region)
    return (phone, None) if phone else (None, "invalid_phone")


def _by_user(mapping: Mapping[UUID, T]) -> dict[UUID, T]:
    # Keys read as UUIDs, so ids given as text still find their rows: a missed lookup would
    # silently ignore someone's opt-out.
    return {k if isinstance(k, UUID) else UUID(str(k)): v for k, v in mapping.items()}


def _normalized_addresses(addresses: Iterable[str]) -> frozenset[str]:
    normalized = set()
    for raw in addresses:
        if "@" in raw:
            normalized.add(normalize_email(raw) or raw.strip().lower())
        else:
            normalized.add(normalize_phone(raw) or raw.strip())
    return frozenset(normalized)


# --- preferences --------------------------------------------------------------------------

def preference_for(rows: Iterable[Preference], type: str, channel: str) -> Preference | None:
    """The row deciding ``type`` on ``channel``: the type's own row, else the ``'*'`` row.

    None when neither exists. Should a user hold two rows for the same key, a disabled one
    wins: sending to someone who said no is the worse mistake.
    """
    exact: Preference | None = None
    wildcard: Preference | None = None
    for row in rows:
        if row.channel != channel:
            continue
        if row.type == type:
            exact = row if exact is None or exact.enabled else exact
        elif row.type == "*":
            wildcard = row if wildcard is None or wildcard.enabled else wildcard
    return exact if exact is not None else wildcard


# --- addresses ----------------------------------------------------------------------------

_DIALABLE = re.compile(r"\+?[0-9\s\-.()]+")


def normalize_email(raw: str) -> str | None:
    """``raw`` trimmed and lowercased if ``email-validator`` finds it a valid address, else None.

    Syntax only (no DNS lookup): the mail provider is the judge of deliverability; this only
    catches data that can never be an address. SES takes 7-bit addresses, so an
    internationalized domain goes as its punycode form and a non-ASCII local part (SMTPUTF8)
    is refused. The reserved ``.test`` names pass, for development and tests.

    >>> normalize_email("  Ada@Example.COM ")
    'ada@example.com'
    """
    try:
        found = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False,
                               test_environment=True)
    except EmailNotValidError:
        return None
    return (found.ascii_email or found.normalized).lower()


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """``raw`` in E.164 if ``phonenumbers`` finds it a valid, dialable number, else None.

    Punctuation is dropped, so ``"+1 (415) 555-0100"`` gives ``"+14155550100"``; numbers that
    cannot exist (``+12345678``) and numbers with an extension are refused. A number without a
    leading ``+`` is refused rather than guessed — guessing a country would text a stranger
    abroad — unless ``default_region`` (ISO 3166 alpha-2, ``RIPPLE_PHONE_DEFAULT_REGION``) says
    which country such numbers are in.

    >>> normalize_phone("+44 20 7946 0958"), normalize_phone("(415) 555-0100")
    ('+442079460958', None)
    >>> normalize_phone("(415) 555-0100", default_region="US")
    '+14155550100'
    """
    text = raw.strip()
    # Digits and punctuation only: phonenumbers would also read letters (1-800-FLOWERS).
    if not _DIALABLE.fullmatch(text) or (not text.startswith("+") and default_region is None):
        return None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- quiet hours --------------------------------------------------------------------------

def quiet_until(window: QuietHours, fallback_timezone: str, now: datetime) -> datetime | None:
    """When ``window`` ends, in UTC, if ``now`` is inside it; None when it is not.

    ``now`` is read on the local wall clock of ``window.timezone``, else
    ``fallback_timezone`` (the recipient's), else UTC — the first that is a known IANA zone.
    The window ends at the first instant after ``now`` at which that clock reads ``end``; when
    a DST jump skips ``end`` (02:30 on a spring-forward day) it ends at the jump. On a
    fall-back day an ``end`` inside the repeated hour is reached at its first occurrence.

    >>> quiet_until(QuietHours(start=time(22), end=time(7), timezone="Europe/Paris"), "UTC",
    ...             datetime(2026, 1, 15, 23, 0, tzinfo=UTC))
    datetime.datetime(2026, 1, 16, 6, 0, tzinfo=datetime.timezone.utc)
    """
    start, end = window.start, window.end
    if start is None or end is None or start == end:
        return None
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    zone = _zone(window.timezone) or _zone(fallback_timezone) or UTC
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= wall < end:
            return None
        end_day = local.date()
    elif wall >= start:
        end_day = local.date() + timedelta(days=1)
    elif wall < end:
        end_day = local.date()
    else:
        return None
    return _first_instant_at(end_day, end, zone, after=now.astimezone(UTC))


@lru_cache(maxsize=512)
def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _first_instant_at(day: date, wall: time, zone: ZoneInfo | timezone,
                      after: datetime) -> datetime:
    """The first UTC instant later than ``after`` at which the clock of ``zone`` reads
    ``wall`` on ``day``, or — when DST skips ``wall`` — the instant of the jump."""
    naive = datetime.combine(day, wall)
    existing = []
    for fold in (0, 1):
        instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == naive:
            existing.append(instant)
    if existing:
        # In a repeated hour ``after`` may be past the first reading (fold=0) but not the
        # second: ``after`` is inside the window, so the clock reads ``wall`` again later.
        return min(instant for instant in existing if instant > after)
    # A gap: fold=1 reads ``wall`` with the offset after the jump and lands before it, fold=0
    # with the offset before and lands after; the jump is in between, found to the second.
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    jumped = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    offset_after = jumped.astimezone(zone).utcoffset()
    while jumped - before > timedelta(seconds=1):
        middle = before + (jumped - before) / 2
        if middle.astimezone(zone).utcoffset() == offset_after:
            jumped = middle
        else:
            before = middle
    return jumped.replace(microsecond=0)
