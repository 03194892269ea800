"""SES feedback: bounce, complaint and delivery events (SES → SNS → this function) update the
delivery rows and keep the suppression list that later sends respect.

An event names its email by SES's message id; an `unconfirmed` delivery (its send's answer was
lost, so the id never reached us) is found by the delivery id the email carries as the
DELIVERY_TAG message tag, and takes the event's status and message id.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ripple import codec
from ripple.db import Database
from ripple.log import logger
from ripple.notify.providers import DELIVERY_TAG

RECORD = """
with updated as (
  update public.notification_deliveries d
  set status = %(status)s, reason = coalesce(%(reason)s::text, d.reason),
      provider_message_id = coalesce(d.provider_message_id, %(message_id)s),
      sent_at = coalesce(d.sent_at, %(sent_at)s::timestamptz)
  where d.channel = 'email'
    and ((d.provider_message_id = %(message_id)s and d.status in ('sent', 'delivered'))
         or (d.id = %(delivery_id)s::uuid and d.status = 'unconfirmed'))
  returning d.id
), suppressed as (
  insert into public.notification_suppressions (address, channel, reason)
  select lower(a), 'email', %(suppress)s::text from unnest(%(addresses)s::text[]) a
  where %(suppress)s::text is not null
  on conflict (address) do nothing
  returning address
)
select (select count(*) from updated) as deliveries, (select count(*) from suppressed) as suppressions
"""


@dataclass
class Feedback:
    """One SES event, reduced to what Ripple records."""

    message_id: str
    status: str
    reason: str | None = None
    suppress: str | None = None
    addresses: list[str] = field(default_factory=list)
    # The delivery id the email was tagged with, and when SES accepted it.
    delivery_id: str | None = None
    sent_at: dt.datetime | None = None


def parse(message: dict[str, Any]) -> Feedback | None:
    """An SES event (configuration-set `eventType` or identity `notificationType` format), or None
    for events Ripple does not record."""
    kind = message.get("eventType") or message.get("notificationType")
    mail = message.get("mail") or {}
    message_id = mail.get("messageId")
    if not message_id:
        return None
    feedback = _event(kind, message, message_id)
    if feedback is not None:
        feedback.delivery_id, feedback.sent_at = _delivery_id(mail), _timestamp(mail)
    return feedback


def _event(kind: Any, message: dict[str, Any], message_id: str) -> Feedback | None:
    if kind == "Bounce":
        bounce = message.get("bounce") or {}
        addresses = [r.get("emailAddress", "") for r in bounce.get("bouncedRecipients", []) if r.get("emailAddress")]
        permanent = bounce.get("bounceType") == "Permanent"
        # Transient bounces (mailbox full, …) may succeed later: recorded, not suppressed.
        return Feedback(message_id, "bounced", f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}",
                        "bounce" if permanent else None, addresses)
    if kind == "Complaint":
        complaint = message.get("complaint") or {}
        addresses = [r.get("emailAddress", "") for r in complaint.get("complainedRecipients", [])
                     if r.get("emailAddress")]
        return Feedback(message_id, "complained", complaint.get("complaintFeedbackType"), "complaint", addresses)
    if kind == "Delivery":
        return Feedback(message_id, "delivered")
    return None


def _delivery_id(mail: dict[str, Any]) -> str | None:
    # Configuration-set events list each tag's values: {"ripple-delivery": ["<uuid>"]}.
    tags = mail.get("tags")
    values = tags.get(DELIVERY_TAG) if isinstance(tags, dict) else None
    if not isinstance(values, list) or not values or not isinstance(values[0], str):
        return None
    try:
        return str(uuid.UUID(values[0]))
    except ValueError:
        return None


def _timestamp(mail: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(mail["timestamp"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class FeedbackRecorder:
    db: Database

    def record(self, feedback: Feedback) -> dict[str, int]:
        with self.db.transaction() as conn:
            row = self.db.execute(conn, RECORD, {
                "status": feedback.status, "reason": feedback.reason, "message_id": feedback.message_id,
                "suppress": feedback.suppress, "addresses": feedback.addresses,
                "delivery_id": feedback.delivery_id, "sent_at": feedback.sent_at})[0]
        return {"deliveries": row["deliveries"], "suppressions": row["suppressions"]}


@lru_cache(maxsize=1)
def recorder() -> FeedbackRecorder:
    return FeedbackRecorder(Database.from_settings())


def on_sns(event: dict[str, Any]) -> dict[str, int]:
    """Lambda entry for the SNS subscription: every record's SES event, malformed ones skipped."""
    totals = {"events": 0, "deliveries": 0, "suppressions": 0, "skipped": 0}
    for record in event.get("Records", []):
        try:
            feedback = parse(codec.loads(record["Sns"]["Message"]))
        except (KeyError, TypeError, ValueError):
            feedback = None
        if feedback is None:
            totals["skipped"] += 1
            continue
        done = recorder().record(feedback)
        totals["events"] += 1
        totals["deliveries"] += done["deliveries"]
        totals["suppressions"] += done["suppressions"]
    logger.info("ses feedback", extra=totals)
    return totals
