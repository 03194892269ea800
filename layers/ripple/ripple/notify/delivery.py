"""Deliver notifications: load, plan (pure), claim, send, record.

A delivery row per (notification, recipient, channel) is inserted — claimed — and committed
before anything is sent, so a retried invocation or a duplicate wake-up finds the claim and
sends nothing twice. A send interrupted after its claim stays `queued` (visible, never
resent): at most once, never twice. Each recipient and channel fails on its own: a bad
phone number does not stop the emails.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import UUID

from ripple import codec
from ripple.aws import clients
from ripple.config import Settings, settings
from ripple.db import Database
from ripple.log import logger
from ripple.notify.exceptions import TemplateError
from ripple.notify.models import Decision, Notification, Preference, QuietHours, Recipient, RoutingConfig
from ripple.notify.providers import Mailer, SendError, Texter
from ripple.notify.routing import plan
from ripple.notify.templates import Templates
from ripple.notify.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url
from ripple.notify.sms import fit

LOAD = "select * from public.notifications where id = %s and parent_id is null"
RECIPIENTS = "select * from public.notification_recipients_for(%s)"
CLAIM = """
insert into public.notification_deliveries
  (notification_id, user_id, channel, address, status, reason, next_attempt_at)
select %s, r.user_id, r.channel, r.address, r.status, r.reason, r.next_attempt_at
from jsonb_to_recordset(%s::jsonb)
  as r(user_id uuid, channel text, address text, status text, reason text, next_attempt_at timestamptz)
on conflict (notification_id, user_id, channel) do nothing
returning id, user_id, channel, address, status
"""
DUE = """
update public.notification_deliveries d set status = 'queued'
where d.id in (select x.id from public.notification_deliveries x
               where x.status = 'deferred' and x.next_attempt_at <= now()
               order by x.next_attempt_at limit %s for update skip locked)
returning d.id, d.notification_id, d.user_id, d.channel, d.address, d.status
"""
RECORD = """
update public.notification_deliveries d
set status = r.status, reason = r.reason, provider_message_id = r.provider_message_id,
    attempts = d.attempts + r.attempts, sent_at = case when r.status = 'sent' then now() end
from jsonb_to_recordset(%s::jsonb)
  as r(id uuid, status text, reason text, provider_message_id text, attempts integer)
where d.id = r.id
"""
SUPPRESS = """
insert into public.notification_suppressions (address, channel, reason)
select r.address, r.channel, r.reason from jsonb_to_recordset(%s::jsonb) as r(address text, channel text, reason text)
on conflict (address) do nothing
"""
PENDING = "select * from realtime.pending_notifications(%s)"
ACK = "select realtime.ack(%s)"

STATUS = {"send": "queued", "skip": "skipped", "defer": "deferred", "suppress": "suppressed", "fail": "failed"}


@dataclass
class Report:
    """What one invocation did, by delivery status."""

    notifications: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, status: str, n: int = 1) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + n


@dataclass
class Courier:
    db: Database
    mailer: Mailer
    texter: Texter
    templates: Templates
    config: Settings
    secret: str

    # -- entry points -------------------------------------------------------------------------
    def drain(self, report: Report, max_rows: int = 100) -> None:
        """Deliver every notification whose wake-up is pending, then acknowledge them."""
        while True:
            with self.db.transaction() as conn:
                rows = self.db.execute(conn, PENDING, (max_rows,))
            if not rows:
                return
            for row in rows:
                self.deliver(row["notification_id"], report)
            with self.db.transaction() as conn:
                self.db.execute(conn, ACK, ([r["id"] for r in rows],))
            if len(rows) < max_rows:
                return

    def deliver(self, notification_id: UUID | str, report: Report) -> None:
        """Plan, claim and send every email/SMS of one notification."""
        with self.db.transaction() as conn:
            found = self.db.execute(conn, LOAD, (str(notification_id),))
            if not found:
                logger.warning("notification not found", extra={"notification_id": str(notification_id)})
                return
            notification = Notification.model_validate(found[0])
            rows = self.db.execute(conn, RECIPIENTS, (str(notification_id),))
        recipients = {r["user_id"]: Recipient.model_validate(r) for r in rows}
        decisions = plan(notification, list(recipients.values()), _preferences(notification, rows),
                         _quiet(rows), _suppressed(rows), dt.datetime.now(dt.timezone.utc),
                         RoutingConfig(sms_priorities=frozenset(self.config.sms_priorities)))
        report.notifications += 1
        claims = [{"user_id": str(d.user_id), "channel": d.channel, "address": d.address,
                   "status": STATUS[d.action], "reason": d.reason,
                   "next_attempt_at": d.not_before.isoformat() if d.not_before else None} for d in decisions]
        if not claims:
            return
        with self.db.transaction() as conn:
            claimed = self.db.execute(conn, CLAIM, (str(notification_id), codec.dumps(claims)))
        for row in claimed:
            report.count(row["status"])
        self._send(notification, recipients, [r for r in claimed if r["status"] == "queued"], report)

    def send_due(self, report: Report, limit: int = 100) -> None:
        """Send deferred deliveries whose quiet hours have ended."""
        with self.db.transaction() as conn:
            due = self.db.execute(conn, DUE, (limit,))
        by_notification: dict[UUID, list[dict]] = {}
        for row in due:
            by_notification.setdefault(row["notification_id"], []).append(row)
        for notification_id, rows in by_notification.items():
            with self.db.transaction() as conn:
                found = self.db.execute(conn, LOAD, (str(notification_id),))
                recipients = {r["user_id"]: Recipient.model_validate(r)
                              for r in self.db.execute(conn, RECIPIENTS, (str(notification_id),))}
            if found:
                self._send(Notification.model_validate(found[0]), recipients, rows, report)

    # -- sending ------------------------------------------------------------------------------
    def _send(self, notification: Notification, recipients: dict[UUID, Recipient],
              claimed: list[dict], report: Report) -> None:
        outcomes, suppressions = [], []
        for row in claimed:
            recipient = recipients.get(row["user_id"])
            outcome = {"id": str(row["id"]), "status": "sent", "reason": None,
                       "provider_message_id": None, "attempts": 1}
            try:
                if recipient is None:
                    raise _Skip("failed", "recipient_gone")
                if row["channel"] == "email":
                    outcome["provider_message_id"], outcome["attempts"] = self._email(
                        notification, recipient, row["address"])
                else:
                    outcome["provider_message_id"], outcome["attempts"] = self._sms(
                        notification, recipient, row["address"])
            except _Skip as skip:
                outcome.update(status=skip.status, reason=skip.reason, attempts=0)
                if skip.status == "suppressed":
                    suppressions.append({"address": row["address"], "channel": row["channel"],
                                         "reason": "opt_out"})
            except TemplateError as exc:
                outcome.update(status="failed", reason=f"template: {exc}"[:500], attempts=0)
            except SendError as exc:
                outcome.update(status="suppressed" if exc.outcome == "suppress" else "failed",
                               reason=f"{exc.code}: {exc}"[:500], attempts=exc.attempts)
                if exc.outcome == "suppress":
                    suppressions.append({"address": row["address"], "channel": row["channel"],
                                         "reason": "opt_out"})
            report.count(outcome["status"])
            report.count("queued", -1)
            outcomes.append(outcome)
        if outcomes:
            with self.db.transaction() as conn:
                self.db.execute(conn, RECORD, (codec.dumps(outcomes),))
                if suppressions:
                    self.db.execute(conn, SUPPRESS, (codec.dumps(suppressions),))

    def _email(self, notification: Notification, recipient: Recipient, address: str) -> tuple[str, int]:
        if not self.mailer.sender:
            raise _Skip("failed", "email_not_configured")
        link = unsubscribe_url(f"{self.config.public_url}/api/unsubscribe",
                               make_token(recipient.user_id, notification.type, "email", self.secret,
                                          dt.datetime.now(dt.timezone.utc)))
        rendered = self.templates.email(notification, recipient, link)
        return self.mailer.send(address, recipient.full_name, rendered, list_unsubscribe_headers(link))

    def _sms(self, notification: Notification, recipient: Recipient, phone: str) -> tuple[str, int]:
        if self.texter.opted_out(phone):
            raise _Skip("suppressed", "opted_out")
        body = fit(self.templates.sms(notification, recipient).body, self.config.sms_max_segments)
        return self.texter.send(phone, body, transactional=notification.priority in ("high", "urgent"))


class _Skip(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _preferences(notification: Notification, rows: list[dict]) -> dict[Any, list[Preference]]:
    # notification_recipients_for already folded the preferences into the enabled channels.
    return {r["user_id"]: [Preference(type=notification.type, channel=c, enabled=False)
                           for c in notification.delivery_method if c not in (r["channels"] or [])]
            for r in rows}


def _quiet(rows: list[dict]) -> dict[Any, QuietHours]:
    return {r["user_id"]: QuietHours(start=r["quiet_hours_start"], end=r["quiet_hours_end"],
                                     timezone=r["quiet_hours_timezone"])
            for r in rows if r["quiet_hours_start"] is not None}


def _suppressed(rows: list[dict]) -> set[str]:
    out = set()
    for r in rows:
        for channel in r["suppressed"] or ():
            address = r["email"] if channel == "email" else r["phone"]
            if address:
                out.add(address)
    return out


@lru_cache(maxsize=1)
def courier() -> Courier:
    """The container-wide courier: its database connection and AWS clients created once."""
    from ripple.auth.jwt import _secret

    config = settings()
    return Courier(
        db=Database.from_settings(),
        mailer=Mailer(clients().sesv2, config.mail_from, config.ses_configuration_set),
        texter=Texter(clients().sns, config.sms_sender_id),
        templates=Templates([config.templates_dir] if config.templates_dir else ()),
        config=config, secret=_secret())
