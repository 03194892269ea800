"""Digests: email/SMS of a type with a ``digest_window`` go out as one message per recipient,
channel and batch key, listing every notification that arrived while the window was open.

The first delivery of a batch opens it: its row waits ``deferred`` / ``digest`` until the
window closes, and the sweep sends it with the members' notifications. Later deliveries of the
same batch join the open one as ``skipped`` / ``digested`` rows whose ``digest_id`` names it,
so a digest is one delivery row and still sent exactly once::

    key = batch_key("{type}:{organization_id}", notification)   # "enrollment.created:7c1…"
    claims = fold(claims, open_digests, key, window, now)        # leaders and members
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ripple.notify.models import Notification

DEFAULT_KEY = "{type}"
# One planner at a time per batch key, so two notifications cannot both open a digest.
LOCK = "select pg_advisory_xact_lock(hashtextextended('ripple.digest:' || %s, 0))"
# Locked, so a sweep about to send one waits for a member joining it (and skips it meanwhile).
OPEN = """
select id, user_id, channel from public.notification_deliveries
where status = 'deferred' and reason = 'digest' and digest_key = %(key)s
  and user_id = any (%(users)s::uuid[])
for update
"""
MEMBERS = """
select n.* from public.notification_deliveries d
join public.notifications n on n.id = d.notification_id
where d.digest_id = %s and n.cancelled_at is null
order by n.created_at, n.id
"""
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def batch_key(template: str | None, notification: Notification) -> str:
    """The batch a notification joins: ``template`` with ``{type}``, ``{organization_id}`` and
    ``{data.<field>}`` filled in (an absent field reads as empty).

    >>> n = Notification(id=UUID(int=1), type="enrollment.created", title="t", message="m",
    ...                  data={"group_id": 7}, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    >>> batch_key("{type}/{data.group_id}", n), batch_key(None, n)
    ('enrollment.created/7', 'enrollment.created')
    """
    def field(found: re.Match) -> str:
        name = found.group(1)
        if name == "type":
            return notification.type
        if name == "organization_id":
            return str(notification.organization_id or "")
        if name.startswith("data."):
            value = notification.data.get(name[5:])
            return "" if value is None else str(value)
        return found.group(0)

    return _FIELD.sub(field, template or DEFAULT_KEY)


def fold(claims: list[dict], open_digests: Mapping[tuple[str, str], UUID], key: str,
         window: dt.timedelta, now: dt.datetime, throttled_too: bool) -> list[dict]:
    """``claims`` with every send (and, when ``throttled_too``, every throttled skip) turned
    into a digest: a member of the open digest of its (user, channel), else a new one."""
    out = []
    for claim in claims:
        wanted = claim["status"] == "queued" or (
            throttled_too and claim["status"] == "skipped" and claim["reason"] == "throttled")
        if not wanted:
            out.append(claim)
            continue
        leader = open_digests.get((claim["user_id"], claim["channel"]))
        if leader is not None:
            out.append({**claim, "status": "skipped", "reason": "digested",
                        "digest_key": key, "digest_id": str(leader), "next_attempt_at": None})
        else:
            out.append({**claim, "status": "deferred", "reason": "digest", "digest_key": key,
                        "next_attempt_at": (now + window).isoformat()})
    return out


def events(leader: Notification, members: list[dict[str, Any]]) -> list[Notification]:
    """The notifications a digest lists, oldest first: its own (unless cancelled) and its
    members'."""
    found = [Notification.model_validate(m) for m in members]
    if leader.cancelled_at is None:
        found.append(leader)
    return sorted(found, key=lambda n: (n.created_at, str(n.id)))
