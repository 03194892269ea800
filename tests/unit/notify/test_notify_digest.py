"""Digests, the pure part: batch keys, folding claims into digests, digest templates."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from ripple.notify.digest import batch_key, events, fold
from ripple.notify.models import Notification, Recipient
from ripple.notify.templates import Templates

NOW = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
ORG = uuid.UUID(int=7)


def notification(n: int = 0, **fields) -> Notification:
    return Notification(id=uuid.UUID(int=100 + n), organization_id=ORG, type="enrollment.created",
                        title="New enrollment", message=f"Student {n} enrolled in Piano",
                        data={"student_name": f"Student {n}", "group_name": "Piano"},
                        created_at=NOW + timedelta(seconds=n), **fields)


def claim(user: str, channel: str = "email", status: str = "queued", reason=None) -> dict:
    return {"user_id": user, "channel": channel, "address": "a@b.test", "status": status,
            "reason": reason, "next_attempt_at": None}


def test_batch_keys_fill_in_type_organization_and_data():
    n = notification()
    assert batch_key("{type}:{organization_id}", n) == f"enrollment.created:{ORG}"
    assert batch_key("{data.group_name}/{data.missing}/{other}", n) == "Piano//{other}"
    assert batch_key(None, n) == "enrollment.created"


def test_sends_open_a_digest_or_join_the_open_one():
    window = timedelta(minutes=5)
    open_digests = {("ada", "email"): uuid.UUID(int=1)}
    out = fold([claim("ada"), claim("bob"), claim("ada", "sms", "skipped", "opted_out"),
                claim("bob", "sms", "skipped", "throttled")], open_digests, "k", window, NOW,
               throttled_too=False)
    assert [(c["status"], c["reason"], c.get("digest_id")) for c in out] == [
        ("skipped", "digested", str(uuid.UUID(int=1))), ("deferred", "digest", None),
        ("skipped", "opted_out", None), ("skipped", "throttled", None)]
    assert out[1]["next_attempt_at"] == (NOW + window).isoformat()
    folded = fold([claim("bob", "sms", "skipped", "throttled")], {}, "k", window, NOW,
                  throttled_too=True)
    assert (folded[0]["status"], folded[0]["reason"]) == ("deferred", "digest")


def test_a_digest_lists_its_members_oldest_first_without_cancelled_ones():
    leader = notification(0)
    members = [notification(2).model_dump(), notification(1).model_dump()]
    assert [e.id for e in events(leader, members)] == [uuid.UUID(int=100), uuid.UUID(int=101),
                                                      uuid.UUID(int=102)]
    cancelled = notification(0, cancelled_at=NOW)
    assert [e.id for e in events(cancelled, members)] == [uuid.UUID(int=101), uuid.UUID(int=102)]


def test_digest_templates_see_every_event():
    batch = [notification(n) for n in range(8)]
    person = Recipient(user_id=uuid.uuid4(), full_name="Aziz")
    mail = Templates().email(batch[-1], person, "https://x.test/u", digest=batch)
    assert mail.subject == "Student 0 and 7 others enrolled in Piano"
    assert all(f"Student {n} enrolled in Piano" in mail.text for n in range(8))
    assert mail.html.count("<li") == 8
    generic = notification(0).model_copy(update={"type": "other.kind"})
    sms = Templates().sms(generic, person, digest=[generic, generic])
    assert sms.body == "2 new: New enrollment and 1 more."
    # A digest of one is the plain email of its notification.
    single = Templates().email(batch[0], person, None, digest=batch[:1])
    assert single.subject == "Student 0 enrolled in Piano"
