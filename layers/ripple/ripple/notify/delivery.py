"""Deliver notifications: load, plan (pure), claim, send, record.

A delivery row per (notification, recipient, channel) is inserted — claimed — and committed
before anything is sent, so a retried invocation or a duplicate wake-up finds the claim and
sends nothing twice. Each send's outcome is committed as soon as it is known, so an invocation
cut short (a Lambda timeout) leaves what it sent `sent`; a send interrupted after its claim
stays `queued` (visible, never resent): at most once, never twice. Each recipient and channel
fails on its own: a bad phone number, or any error while sending one delivery, does not stop
the others.

A delivery the provider kept throttling (or could not be reached for) is stored `deferred`
with reason `retry: <code>` and sent again by a later sweep, until `notify_max_attempts`
sends in all have failed. Deferred deliveries — quiet hours or retries — are planned again
when due, so an opt-out, a suppression or a deleted recipient since then is respected.

A send the provider may have received without its answer reaching us (a read timeout, a
connection closed after sending) is stored `unconfirmed` with the error as reason and never
sent again; an SES event for that email (matched by the delivery id it carries as a message
tag) settles it later.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import UUID

from ripple import codec
from ripple.aws import clients
from ripple.config import Settings, settings
from ripple.db import Database
from ripple.log import logger
from ripple.notify import digest, routing
from ripple.notify.errors import resend_after
from ripple.notify.exceptions import TemplateError
from ripple.notify.models import (
    DELIVERY_CHANNELS,
    Decision,
    DeliveryRule,
    Notification,
    Preference,
    QuietHours,
    Recipient,
    RoutingConfig,
)
from ripple.notify.providers import TRIES, Mailer, SendError, Texter
from ripple.notify.sms import fit
from ripple.notify.templates import Templates
from ripple.notify.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url

LOAD = "select * from public.notifications where id = %s and parent_id is null"
RECIPIENTS = "select * from public.notification_recipients_for(%s)"
RULE = """
select escalate_after, throttle_limit, throttle_window, digest_window, digest_key
from public.notification_rules
where type in (%s, '*') order by type = '*' limit 1
"""
READ = """
select user_id from public.notifications
where (id = %(id)s or parent_id = %(id)s) and read_at is not null and user_id is not null
"""
# One planner at a time per throttled type, so two invocations cannot both take the last send.
THROTTLE_LOCK = "select pg_advisory_xact_lock(hashtextextended('ripple.throttle:' || %s, 0))"
# Sends of the type per (recipient, channel) inside the window: done, or in flight (queued
# without a reason; a due delivery keeps its reason until it is sent), this notification's
# own rows excepted.
RECENT_SENDS = """
select d.user_id, d.channel, count(*)::integer as sends
from public.notification_deliveries d
join public.notifications n on n.id = d.notification_id
where n.type = %(type)s and d.notification_id <> %(id)s and d.user_id = any (%(users)s::uuid[])
  and (d.status in ('sent', 'delivered', 'bounced', 'complained', 'unconfirmed')
       or (d.status = 'queued' and d.reason is null))
  and coalesce(d.sent_at, d.created_at) > now() - %(window)s::interval
group by d.user_id, d.channel
"""
CLAIM = """
insert into public.notification_deliveries
  (notification_id, user_id, channel, address, status, reason, next_attempt_at, digest_key,
   digest_id)
select %s, r.user_id, r.channel, r.address, r.status, r.reason, r.next_attempt_at, r.digest_key,
       r.digest_id
from jsonb_to_recordset(%s::jsonb)
  as r(user_id uuid, channel text, address text, status text, reason text,
       next_attempt_at timestamptz, digest_key text, digest_id uuid)
on conflict (notification_id, user_id, channel) do nothing
returning id, user_id, channel, address, status, attempts
"""
DUE = """
update public.notification_deliveries d set status = 'queued'
where d.id in (select x.id from public.notification_deliveries x
               where x.status = 'deferred' and x.next_attempt_at <= now()
               order by x.next_attempt_at limit %s for update skip locked)
returning d.id, d.notification_id, d.user_id, d.channel, d.address, d.status, d.attempts,
          d.reason
"""
RECORD = """
update public.notification_deliveries
set status = %(status)s, reason = %(reason)s, address = coalesce(%(address)s, address),
    provider_message_id = %(provider_message_id)s, attempts = attempts + %(attempts)s,
    next_attempt_at = now() + %(retry_in)s::float8 * interval '1 second',
    sent_at = case when %(status)s::text = 'sent' then now() end
where id = %(id)s
"""
SUPPRESS = """
insert into public.notification_suppressions (address, channel, reason)
values (%(address)s, %(channel)s, 'opt_out')
on conflict (address) do nothing
"""
REDEFER = "update public.notification_deliveries set status = 'deferred' where id = any(%s) and status = 'queued'"
PENDING = "select * from realtime.pending_notifications(%s)"
ACK = "select realtime.ack_notifications(%s)"

# A due delivery about to be sent: in flight again, so the throttle counts it.
IN_FLIGHT = "update public.notification_deliveries set reason = null where id = %s"

STATUS = {"send": "queued", "skip": "skipped", "defer": "deferred", "suppress": "suppressed", "fail": "failed"}


@dataclass
class Report:
    """What one invocation did, by delivery status."""

    notifications: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, status: str, n: int = 1) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + n


@dataclass(frozen=True)
class Outcome:
    """How one claimed delivery ended: its new status and what to record with it."""

    status: str
    reason: str | None = None
    provider_message_id: str | None = None
    attempts: int = 0
    # Seconds until a deferred retry is due.
    retry_in: float | None = None
    # The address joins the suppression list (an SMS number that opted out).
    suppress: bool = False


@dataclass
class Courier:
    db: Database
    mailer: Mailer
    texter: Texter
    templates: Templates
    config: Settings
    secret: str

    # -- entry points -------------------------------------------------------------------------
    def drain(self, report: Report, max_rows: int = 100, deadline: float | None = None) -> None:
        """Deliver every notification whose wake-up is pending, then acknowledge them; past
        `deadline` (time.monotonic()) no further notification starts and the rest stay pending."""
        while True:
            with self.db.transaction() as conn:
                rows = self.db.execute(conn, PENDING, (max_rows,))
            if not rows:
                return
            done = []
            for row in rows:
                if deadline is not None and time.monotonic() > deadline:
                    break
                if row["notification_id"] is None:
                    # Not a wake-up Ripple wrote (notifications_enqueue always names its row): it
                    # would fail every pass and hold the queue up, so it is let go, logged.
                    logger.warning("notification wake-up without a notification id dropped",
                                   extra={"outbox_id": row["id"]})
                else:
                    self.deliver(row["notification_id"], report)
                done.append(row["id"])
            with self.db.transaction() as conn:
                self.db.execute(conn, ACK, (done,))
            if len(done) < len(rows):
                logger.info("notify out of time", extra={"pending": len(rows) - len(done)})
                return
            if len(rows) < max_rows:
                return

    def deliver(self, notification_id: UUID | str, report: Report) -> None:
        """Plan, claim and send every email/SMS of one notification."""
        with self.db.transaction() as conn:
            loaded = self.load(conn, notification_id)
            if loaded is None:
                logger.warning("notification not found",
                               extra={"notification_id": str(notification_id)})
                return
            decisions = self.plan(conn, loaded, quiet=_quiet(loaded.rows))
            claims = [{"user_id": str(d.user_id), "channel": d.channel, "address": d.address,
                       "status": STATUS[d.action], "reason": d.reason,
                       "next_attempt_at": d.not_before.isoformat() if d.not_before else None}
                      for d in decisions]
            if loaded.rule.digest_window is not None and claims:
                claims = self._fold(conn, loaded, claims)
            claims += _unknown(loaded)
            # Claimed in the transaction that counted the throttle's sends (and holds its lock).
            claimed = self.db.execute(conn, CLAIM, (str(notification_id), codec.dumps(claims))) \
                if claims else []
        report.notifications += 1
        for row in claimed:
            if row["status"] != "queued":
                report.count(row["status"])
        self._send(loaded.notification, loaded.recipients,
                   [r for r in claimed if r["status"] == "queued"], report)

    def send_due(self, report: Report, limit: int = 100, deadline: float | None = None) -> None:
        """Send deferred deliveries that are due: quiet hours over, a retry's wait over, an
        escalation's delay over, or a digest's window closed.

        Each is planned again first: a recipient who has gone fails (`recipient_gone`), an
        opt-out since skips it, a suppressed address suppresses it, a changed address is used,
        a cancellation or a read in-app copy skips it, a throttle reached since skips it.
        Past `deadline` the rest go back to `deferred`, due at once, for the next sweep.
        """
        with self.db.transaction() as conn:
            due = self.db.execute(conn, DUE, (limit,))
        by_notification: dict[UUID, list[dict]] = {}
        for row in due:
            by_notification.setdefault(row["notification_id"], []).append(row)
        for notification_id, rows in by_notification.items():
            if deadline is not None and time.monotonic() > deadline:
                with self.db.transaction() as conn:
                    self.db.execute(conn, REDEFER, ([r["id"] for r in rows],))
                continue
            self._due(notification_id, rows, report)

    def _due(self, notification_id: UUID, rows: list[dict], report: Report) -> None:
        """Plan again and send (or settle) the due deliveries of one notification."""
        with self.db.transaction() as conn:
            loaded = self.load(conn, notification_id)
            if loaded is None:
                return  # deleted since: its deliveries went with it
            # Quiet hours were honoured when a delivery was deferred for them or for a
            # retry; one that waited for its escalation meets them for the first time.
            waited = {r["user_id"] for r in rows if r.get("reason") == "escalation"}
            quiet = {u: q for u, q in _quiet(loaded.rows).items() if u in waited}
            decisions = {(d.user_id, d.channel): d
                         for d in self.plan(conn, loaded, quiet=quiet)}
            sendable = []
            for row in rows:
                decision = decisions.get((row["user_id"], row["channel"]))
                if row.get("reason") == "digest":
                    events, ended = self._digest(conn, loaded, row, decision)
                    if ended is None and decision is not None:
                        sendable.append({**row, "address": decision.address,
                                         "events": events})
                        continue
                    if ended is not None:
                        self._record({**row, "address": None}, ended, conn)
                        report.count(ended.status)
                        continue
                if decision is not None and decision.action == "send":
                    sendable.append({**row, "address": decision.address})
                    continue
                outcome = (Outcome("failed", "recipient_gone") if decision is None
                           else Outcome(STATUS[decision.action], decision.reason,
                                        retry_in=_seconds_until(decision.not_before)))
                self._record({**row, "address": decision.address if decision else None},
                             outcome, conn)
                report.count(outcome.status)
            # Marked in flight with the throttle's count, then sent outside the lock.
            for row in sendable:
                self.db.execute(conn, IN_FLIGHT, (str(row["id"]),))
        self._send(loaded.notification, loaded.recipients, sendable, report)

    # -- planning -----------------------------------------------------------------------------
    def load(self, conn: Any, notification_id: UUID | str) -> Loaded | None:
        """The original notification and what planning it needs; None if there is none."""
        found = self.db.execute(conn, LOAD, (str(notification_id),))
        if not found:
            return None
        notification = Notification.model_validate(found[0])
        rows = self.db.execute(conn, RECIPIENTS, (str(notification_id),))
        rule_rows = self.db.execute(conn, RULE, (notification.type,))
        rule = DeliveryRule.model_validate(rule_rows[0]) if rule_rows else DeliveryRule()
        read: set[UUID] = set()
        if rule.escalate_after is not None:
            read = {r["user_id"] for r in self.db.execute(conn, READ, {"id": notification.id})}
        return Loaded(notification, {r["user_id"]: Recipient.model_validate(r) for r in rows},
                      rows, rule, read)

    def plan(self, conn: Any, loaded: Loaded, quiet: dict[Any, QuietHours]) -> list[Decision]:
        """``routing.plan`` of the loaded notification, with its rule's throttle counted."""
        notification, rule = loaded.notification, loaded.rule
        recent: dict[tuple[UUID, str], int] = {}
        if rule.throttle_limit is not None and loaded.recipients:
            self.db.execute(conn, THROTTLE_LOCK, (notification.type,))
            for r in self.db.execute(conn, RECENT_SENDS, {
                    "type": notification.type, "id": notification.id,
                    "users": [str(u) for u in loaded.recipients], "window": rule.throttle_window}):
                recent[(r["user_id"], r["channel"])] = r["sends"]
        return routing.plan(notification, list(loaded.recipients.values()),
                            _preferences(notification, loaded.rows), quiet,
                            _suppressed(loaded.rows), dt.datetime.now(dt.UTC),
                            RoutingConfig(sms_priorities=frozenset(self.config.sms_priorities),
                                          default_region=self.config.phone_default_region),
                            rule=rule, recent_sends=recent, read=loaded.read)

    def _fold(self, conn: Any, loaded: Loaded, claims: list[dict]) -> list[dict]:
        """Claims turned into digest leaders and members, under the batch key's lock."""
        rule = loaded.rule
        assert rule.digest_window is not None
        key = digest.batch_key(rule.digest_key, loaded.notification)
        self.db.execute(conn, digest.LOCK, (key,))
        open_digests = {(str(r["user_id"]), r["channel"]): r["id"] for r in self.db.execute(
            conn, digest.OPEN, {"key": key, "users": [c["user_id"] for c in claims]})}
        return digest.fold(claims, open_digests, key, rule.digest_window,
                           dt.datetime.now(dt.UTC), throttled_too=rule.throttle_limit is not None)

    def _digest(self, conn: Any, loaded: Loaded, row: dict,
                decision: Decision | None) -> tuple[list[Notification], Outcome | None]:
        """A due digest's notifications, or the outcome that ends (or re-defers) it instead."""
        events = digest.events(loaded.notification,
                               self.db.execute(conn, digest.MEMBERS, (str(row["id"]),)))
        if decision is None:
            return [], Outcome("failed", "recipient_gone")
        window = loaded.rule.digest_window
        if decision.reason == "throttled" and window is not None:
            # Held back by the throttle: the digest stays open for another window.
            return [], Outcome("deferred", "digest", retry_in=window.total_seconds())
        sendable = decision.action == "send" or (decision.reason == "cancelled"
                                                 and decision.address is not None)
        if not events or not sendable:
            return [], Outcome(STATUS[decision.action], decision.reason or "cancelled",
                               retry_in=_seconds_until(decision.not_before))
        return events, None

    # -- sending ------------------------------------------------------------------------------
    def _send(self, notification: Notification, recipients: dict[UUID, Recipient],
              claimed: list[dict], report: Report) -> None:
        for row in claimed:
            outcome = self._attempt(notification, recipients.get(row["user_id"]), row)
            self._record(row, outcome)
            report.count(outcome.status)

    def _attempt(self, notification: Notification, recipient: Recipient | None,
                 row: dict) -> Outcome:
        """Send one claimed delivery; whatever goes wrong is this delivery's outcome alone."""
        done = row.get("attempts") or 0
        tries = max(1, min(TRIES, self.config.notify_max_attempts - done))
        try:
            if recipient is None:
                return Outcome("failed", "recipient_gone")
            events = row.get("events") or ()
            if row["channel"] == "email":
                message_id, attempts = self._email(notification, recipient, row["address"], tries,
                                                   str(row["id"]), events)
            else:
                message_id, attempts = self._sms(notification, recipient, row["address"], tries,
                                                 events)
            return Outcome("sent", provider_message_id=message_id, attempts=attempts)
        except _Skip as skip:
            return Outcome(skip.status, skip.reason, suppress=skip.status == "suppressed")
        except TemplateError as exc:
            return Outcome("failed", f"template: {exc}"[:500])
        except SendError as exc:
            if exc.outcome == "unconfirmed":
                return Outcome("unconfirmed", str(exc)[:500], attempts=exc.attempts)
            if exc.outcome == "retry":
                total = done + exc.attempts
                if total < self.config.notify_max_attempts:
                    return Outcome("deferred", f"retry: {exc.code}"[:500], attempts=exc.attempts,
                                   retry_in=resend_after(total))
                return Outcome("failed", f"{exc.code}: gave up after {total} attempts"[:500],
                               attempts=exc.attempts)
            return Outcome("suppressed" if exc.outcome == "suppress" else "failed", str(exc)[:500],
                           attempts=exc.attempts, suppress=exc.outcome == "suppress")
        except Exception as exc:
            logger.exception("delivery failed", extra={"delivery_id": str(row["id"]),
                                                       "notification_id": str(notification.id),
                                                       "channel": row["channel"]})
            return Outcome("failed", f"error: {type(exc).__name__}")

    def _record(self, row: dict, outcome: Outcome, conn: Any = None) -> None:
        if conn is None:
            with self.db.transaction() as own:
                return self._record(row, outcome, own)
        self.db.execute(conn, RECORD, {
            "id": str(row["id"]), "status": outcome.status, "reason": outcome.reason,
            "address": row.get("address"), "provider_message_id": outcome.provider_message_id,
            "attempts": outcome.attempts, "retry_in": outcome.retry_in})
        if outcome.suppress and row.get("address"):
            self.db.execute(conn, SUPPRESS, {"address": row["address"], "channel": row["channel"]})

    def _email(self, notification: Notification, recipient: Recipient, address: str,
               tries: int, delivery: str,
               events: Sequence[Notification] = ()) -> tuple[str, int]:
        if not self.mailer.sender:
            raise _Skip("failed", "email_not_configured")
        link = unsubscribe_url(f"{self.config.public_url}/api/unsubscribe",
                               make_token(recipient.user_id, notification.type, "email", self.secret,
                                          dt.datetime.now(dt.UTC)))
        rendered = self.templates.email(notification, recipient, link, digest=events)
        return self.mailer.send(address, recipient.full_name, rendered,
                                list_unsubscribe_headers(link), tries=tries, delivery=delivery)

    def _sms(self, notification: Notification, recipient: Recipient, phone: str,
             tries: int, events: Sequence[Notification] = ()) -> tuple[str, int]:
        if self.texter.opted_out(phone):
            raise _Skip("suppressed", "opted_out")
        body = fit(self.templates.sms(notification, recipient, digest=events).body,
                   self.config.sms_max_segments)
        return self.texter.send(phone, body, tries=tries,
                                transactional=notification.priority in ("high", "urgent"))


@dataclass(frozen=True)
class Loaded:
    """A notification and what planning it needs, read in one transaction."""

    notification: Notification
    recipients: dict[UUID, Recipient]
    rows: list[dict]
    rule: DeliveryRule
    read: set[UUID]


def _unknown(loaded: Loaded) -> list[dict]:
    # A user-targeted notification whose user the recipients view does not know: each email
    # and SMS asked for is recorded failed, so the notification does not vanish silently.
    target = loaded.notification.user_id
    channels = [c for c in DELIVERY_CHANNELS if c in loaded.notification.delivery_method]
    if target is None or target in loaded.recipients or not channels:
        return []
    logger.warning("notification recipient unknown", extra={
        "notification_id": str(loaded.notification.id), "user_id": str(target)})
    return [{"user_id": str(target), "channel": c, "address": None, "status": "failed",
             "reason": "recipient_unknown", "next_attempt_at": None} for c in channels]


def _seconds_until(when: dt.datetime | None) -> float | None:
    return None if when is None else (when - dt.datetime.now(dt.UTC)).total_seconds()


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
