"""SES feedback: bounce, complaint and delivery events (SES → SNS → this function) update the
delivery rows and keep the suppression list that later sends respect."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ripple import codec
from ripple.db import Database
from ripple.log import logger

RECORD = """
with updated as (
  update public.notification_deliveries d
  set status = %(status)s, reason = coalesce(%(reason)s::text, d.reason)
  where d.provider_message_id = %(message_id)s and d.channel = 'email'
    and d.status in ('sent', 'delivered')
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


def parse(message: dict[str, Any]) -> Feedback | None:
    """An SES event (configuration-set `eventType` or identity `notificationType` format), or None
    for events Ripple does not record."""
    kind = message.get("eventType") or message.get("notificationType")
    mail = message.get("mail") or {}
    message_id = mail.get("messageId")
    if not message_id:
        return None
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


@dataclass
class FeedbackRecorder:
    db: Database

    def record(self, feedback: Feedback) -> dict[str, int]:
        with self.db.transaction() as conn:
            row = self.db.execute(conn, RECORD, {
                "status": feedback.status, "reason": feedback.reason, "message_id": feedback.message_id,
                "suppress": feedback.suppress, "addresses": feedback.addresses})[0]
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
