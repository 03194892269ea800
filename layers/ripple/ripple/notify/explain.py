"""Explain a notification: for each recipient and channel, what delivery would decide now and
the rule that decides it, beside what was recorded — through the planner delivery uses.

A draft is explained by inserting it in a transaction that is rolled back: recipients are
resolved, copies fanned out and rules applied exactly as for a real one, and nothing stays
(the wake-up fires only at commit)::

    explain_stored(courier(), notification_id)  # [{"user_id", "channel", "decision", ...}]
    explain_draft(courier(), fields)             # the same for a notification not yet made
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

from ripple import codec
from ripple.notify.delivery import Courier, Loaded, _quiet, _unknown
from ripple.notify.models import Decision, DeliveryRule

RECORDED = """
select user_id, channel, status, reason, digest_id from public.notification_deliveries
where notification_id = %s
"""
DRAFT = """
insert into public.notifications (organization_id, user_id, role_target, type, title, message,
                                  priority, delivery_method, action_url, data, cancel_key)
values (%(organization_id)s, %(user_id)s, %(role_target)s, %(type)s, %(title)s, %(message)s,
        %(priority)s, %(delivery_method)s, %(action_url)s, %(data)s::jsonb, %(cancel_key)s)
returning id
"""

# The rule behind each reason: where to look to change the outcome.
RULES = {
    "sms_requires_high_priority": "sms priorities (RIPPLE_SMS_PRIORITIES)",
    "opted_out": "preference (notification_preferences)",
    "not_opted_in": "preference (opt-in channel)",
    "quiet_hours": "quiet hours (notification_settings)",
    "suppressed": "suppression list (notification_suppressions)",
    "no_email_address": "recipient address", "invalid_email": "recipient address",
    "no_phone_number": "recipient address", "invalid_phone": "recipient address",
    "cancelled": "cancel_key (cancel_notifications)",
    "read_in_app": "escalation (notification_rules.escalate_after)",
    "escalation": "escalation (notification_rules.escalate_after)",
    "throttled": "throttle (notification_rules.throttle_limit)",
    "recipient_unknown": "recipients view (notification_recipients_v)",
}


def verdicts(loaded: Loaded, decisions: list[Decision],
             recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (recipient, channel): ``decision`` (send, digest, skip, defer, suppress,
    fail), ``reason``, ``rule``, ``target`` (why the recipient is one), ``not_before`` and the
    ``recorded`` delivery (status, reason) if there is one."""
    notification, rule = loaded.notification, loaded.rule
    done = {(str(r["user_id"]), r["channel"]): {"status": r["status"], "reason": r["reason"]}
            for r in recorded}
    out = []
    for d in decisions:
        decision: str = d.action
        reason: str | None = d.reason
        folded = decision == "send" or (reason == "throttled" and rule.throttle_limit is not None)
        if rule.digest_window is not None and folded:
            decision, reason = "digest", "digest_window"
        role = d.recipient.role
        out.append({
            "user_id": str(d.user_id), "channel": d.channel, "decision": decision,
            "reason": reason, "rule": _rule(reason, rule), "address": d.address,
            "not_before": d.not_before.isoformat() if d.not_before else None,
            "target": "user_id" if notification.user_id is not None else f"role_target: {role}",
            "recorded": done.get((str(d.user_id), d.channel)),
        })
    for claim in _unknown(loaded):
        out.append({"user_id": claim["user_id"], "channel": claim["channel"],
                    "decision": "fail", "reason": "recipient_unknown",
                    "rule": RULES["recipient_unknown"], "address": None, "not_before": None,
                    "target": "user_id",
                    "recorded": done.get((claim["user_id"], claim["channel"]))})
    return out


def _rule(reason: str | None, rule: DeliveryRule) -> str | None:
    if reason == "digest_window":
        return f"digest (notification_rules.digest_window {rule.digest_window})"
    return RULES.get(reason or "")


def explain_stored(courier: Courier, notification_id: UUID | str) -> list[dict] | None:
    """The verdicts for a stored original notification; None when there is none."""
    def read(conn: Any) -> list[dict] | None:
        loaded = courier.load(conn, notification_id)
        if loaded is None:
            return None
        decisions = courier.plan(conn, loaded, quiet=_quiet(loaded.rows))
        return verdicts(loaded, decisions,
                        courier.db.execute(conn, RECORDED, (str(notification_id),)))

    return courier.db.unit(read)


class _RolledBack(Exception):
    """Carries a draft's verdicts out of its transaction, rolling the draft back."""


def explain_draft(courier: Courier, fields: dict[str, Any]) -> list[dict]:
    """The verdicts for a notification that is never stored (``fields`` as ``INSERT`` takes
    them, ``data`` a dict)."""
    def plan(conn: Any) -> list[dict]:
        params = {**fields, "data": codec.dumps(fields.get("data") or {})}
        created = courier.db.execute(conn, DRAFT, params)[0]["id"]
        loaded = courier.load(conn, created)
        assert loaded is not None
        raise _RolledBack(verdicts(loaded, courier.plan(conn, loaded, quiet=_quiet(loaded.rows)),
                                   []))

    try:
        courier.db.unit(plan)
    except _RolledBack as done:
        return done.args[0]
    raise AssertionError("unreachable")
