"""Delivery rules end to end through the local mailbox: unknown recipients recorded, in-app first
with escalation, cancellation by key, throttles, and exactly one send under duplicate wake-ups."""
from __future__ import annotations

import json
import time
import uuid

from ripple.notify.handler import NotifyEvent, on_event
from tests.e2e.test_notifications import deliveries, mailbox, school, user_token, wait_for  # noqa: F401
from tests.e2e.test_notifications_api import call_json


def reasons(db, notification_id) -> dict[tuple[str, str], tuple[str, str | None]]:
    rows = db.execute("select user_id::text, channel, status, reason from notification_deliveries "
                      "where notification_id = %s", (notification_id,)).fetchall()
    return {(u, c): (s, r) for u, c, s, r in rows}


def person(db, org=None, role="member", phone=None) -> tuple[str, str]:
    user = str(uuid.uuid4())
    address = f"{user}@rules.test"
    db.execute("insert into profiles (id, organization_id, role, full_name, email, phone) "
               "values (%s, %s, %s, 'P', %s, %s)", (user, org, role, address, phone))
    return user, address


def notify(db, user, type, delivery="{in_app,email}", priority="normal", cancel_key=None) -> str:
    return str(db.execute(
        "insert into notifications (user_id, type, title, message, priority, delivery_method, "
        "cancel_key) values (%s, %s, 'Title', 'Body', %s, %s, %s) returning id",
        (user, type, priority, delivery, cancel_key)).fetchone()[0])


def rule(db, **fields) -> str:
    type = f"rule.{uuid.uuid4().hex[:10]}"
    columns = ", ".join(["type", *fields])
    values = ", ".join(["%s"] * (len(fields) + 1))
    db.execute(f"insert into notification_rules ({columns}) values ({values})",
               (type, *fields.values()))
    return type


def test_a_recipient_that_cannot_be_resolved_is_recorded_failed_per_channel(stack, db):
    known, address = person(db)
    unknown = str(uuid.uuid4())  # no profiles row
    for user in (known, unknown):
        notify(db, user, "invoice.paid", delivery="{in_app,email,sms}", priority="high")
    lost = db.execute("select id from notifications where user_id = %s", (unknown,)).fetchone()[0]
    wait_for(lambda: len(reasons(db, lost)) == 2)
    assert reasons(db, lost) == {(unknown, "email"): ("failed", "recipient_unknown"),
                                 (unknown, "sms"): ("failed", "recipient_unknown")}
    # Control: the known user's email went out in the same sweep.
    wait_for(lambda: [m for m in mailbox(stack, to=address)])


def test_in_app_first_escalates_only_what_stays_unread(stack, db):
    type = rule(db, escalate_after="3 seconds")
    org = str(uuid.uuid4())
    by_rest, by_sql, unread = (person(db, org, "admin") for _ in range(3))
    original = str(db.execute(
        "insert into notifications (organization_id, role_target, type, title, message, "
        "delivery_method) values (%s, '{admin}', %s, 'Outage', 'API down', '{in_app,email}') "
        "returning id", (org, type)).fetchone()[0])
    users = [by_rest[0], by_sql[0], unread[0]]
    wait_for(lambda: len(reasons(db, original)) == 3)
    assert set(reasons(db, original).values()) == {("deferred", "escalation")}

    copy = {u: str(i) for i, u in db.execute(
        "select id, user_id::text from notifications where parent_id = %s", (original,)).fetchall()}
    status, item = call_json(stack, "PATCH", f"/api/notifications/{copy[users[0]]}",
                             token=user_token(users[0]), body={"read": True})
    assert status == 200 and item["read_at"]
    db.execute("update notifications set read_at = now() where id = %s", (copy[users[1]],))
    assert reasons(db, original)[(users[0], "email")] == ("skipped", "read_in_app")
    assert reasons(db, original)[(users[1], "email")] == ("skipped", "read_in_app")
    assert mailbox(stack, to=unread[1]) == []  # not before its delay

    wait_for(lambda: deliveries(db, original)[(users[2], "email")] == "sent")
    assert [m["subject"] for m in mailbox(stack, to=unread[1])] == ["Outage"]
    time.sleep(1.5)  # another sweep: the read ones stay unsent
    assert mailbox(stack, to=by_rest[1]) == [] and mailbox(stack, to=by_sql[1]) == []


def test_cancelling_by_key_withdraws_what_has_not_gone_out(stack, db):
    type = rule(db, escalate_after="1 hour")
    user, address = person(db)
    booking, other = f"booking-{uuid.uuid4()}", f"booking-{uuid.uuid4()}"
    reminder = notify(db, user, type, cancel_key=booking)
    kept = notify(db, user, type, cancel_key=other)
    wait_for(lambda: len(reasons(db, reminder)) == 1 and len(reasons(db, kept)) == 1)
    assert reasons(db, reminder)[(user, "email")] == ("deferred", "escalation")

    body = {"cancel_key": booking}
    status, answer = call_json(stack, "POST", "/api/notifications/cancel",
                               token=user_token(user), body=body)
    assert status == 403
    status, answer = call_json(stack, "POST", "/api/notifications/cancel",
                               token=stack.key("service_role"), body=body)
    assert status == 200 and answer == {"notifications": 1, "deliveries": 1}
    assert reasons(db, reminder)[(user, "email")] == ("skipped", "cancelled")
    assert reasons(db, kept)[(user, "email")] == ("deferred", "escalation")  # control
    status, answer = call_json(stack, "POST", "/api/notifications/cancel",
                               token=stack.key("service_role"), body=body)
    assert answer == {"notifications": 0, "deliveries": 0}

    # Cancelled before its wake-up was handled: planned as skipped, never sent.
    plain, plain_address = person(db)
    with db.transaction():
        early = notify(db, plain, "booking.reminder", cancel_key=f"{booking}-b")
        assert db.execute("select * from cancel_notifications(%s)",
                          (f"{booking}-b",)).fetchone() == (1, 0)
    control = notify(db, plain, "booking.reminder")
    wait_for(lambda: deliveries(db, control).get((plain, "email")) == "sent")
    wait_for(lambda: reasons(db, early).get((plain, "email")) == ("skipped", "cancelled"))
    assert len(mailbox(stack, to=plain_address)) == 1
    assert mailbox(stack, to=address) == []


def test_a_throttle_caps_sends_per_recipient_type_and_channel(stack, db):
    type = rule(db, throttle_limit=2, throttle_window="1 hour")
    phone = f"+1415555{uuid.uuid4().int % 1000:03d}1"
    user, address = person(db, phone=phone)
    other, other_address = person(db)
    sent = [notify(db, user, type, delivery="{in_app,email,sms}", priority="high")
            for _ in range(4)]
    control = [notify(db, other, type) for _ in range(2)]
    wait_for(lambda: all(len(reasons(db, n)) == 2 for n in sent))
    wait_for(lambda: all(deliveries(db, n).get((other, "email")) == "sent" for n in control))
    outcomes = [reasons(db, n) for n in sent]
    for channel in ("email", "sms"):
        assert sorted(o[(user, channel)] for o in outcomes) == [
            ("sent", None), ("sent", None), ("skipped", "throttled"), ("skipped", "throttled")]
    assert len(mailbox(stack, to=address)) == 2
    assert len(mailbox(stack, channel="sms", to=phone)) == 2
    assert len(mailbox(stack, to=other_address)) == 2  # another recipient has its own count


def test_duplicate_wake_ups_send_once_under_every_rule(stack, db):
    escalated = rule(db, escalate_after="2 seconds")
    throttled = rule(db, throttle_limit=5, throttle_window="1 hour")
    user, address = person(db)
    ids = [notify(db, user, escalated), notify(db, user, throttled),
           notify(db, user, escalated, cancel_key=f"k-{uuid.uuid4()}")]
    db.execute("select * from cancel_notifications((select cancel_key from notifications "
               "where id = %s))", (ids[2],))
    for _ in range(3):
        for id_ in ids:
            on_event(NotifyEvent(notification_id=id_))
            db.execute("insert into realtime.outbox (kind, payload) values ('notification', %s)",
                       (json.dumps({"notification_id": id_}),))
    wait_for(lambda: deliveries(db, ids[0]).get((user, "email")) == "sent")
    for _ in range(3):
        on_event(NotifyEvent(sweep=True))
    time.sleep(1.5)
    assert reasons(db, ids[2])[(user, "email")] == ("skipped", "cancelled")
    assert len(mailbox(stack, to=address)) == 2


def test_a_digest_of_eight_enrollments_is_one_email_per_admin(stack, school):
    db, org, admins = school["db"], school["org"], school["admins"]
    db.execute("insert into notification_rules (type, digest_window, digest_key) "
               "values ('enrollment.created', '3 seconds', '{type}:{organization_id}')")
    try:
        for n in range(8):
            student = db.execute("insert into students (organization_id, full_name) "
                                 "values (%s, %s) returning id", (org, f"Student {n}")).fetchone()[0]
            db.execute("insert into student_group_enrollments (student_id, group_id) "
                       "values (%s, %s)", (student, school["group"]))
        originals = [r[0] for r in db.execute(
            "select id from notifications where organization_id = %s and parent_id is null "
            "and type = 'enrollment.created' order by created_at", (org,)).fetchall()]
        assert len(originals) == 8
        # In-app copies stay one per enrollment.
        assert db.execute("select count(*) from notifications where parent_id = any(%s)",
                          (originals,)).fetchone() == (16,)

        def mails(admin):
            address = f"admin{admins.index(admin)}.{org[:8]}@school.test"
            return [m for m in mailbox(stack, channel="email") if address in m["to"].lower()]

        wait_for(lambda: all(len(mails(a)) == 1 for a in admins))
        for admin in admins:
            (mail,) = mails(admin)
            assert mail["subject"] == "Student 0 and 7 others enrolled in Piano"
            assert all(f"Student {n} enrolled in Piano" in mail["text"] for n in range(8))
            rows = db.execute(
                "select id, status, reason, digest_id from notification_deliveries "
                "where user_id = %s and notification_id = any(%s)", (admin, originals)).fetchall()
            (leader,) = [r for r in rows if r[1] == "sent"]
            members = [r for r in rows if r[1] != "sent"]
            assert len(members) == 7
            assert {(r[1], r[2], r[3]) for r in members} == {("skipped", "digested", leader[0])}
        # Duplicate wake-ups and sweeps send nothing more.
        for id_ in originals:
            on_event(NotifyEvent(notification_id=id_))
        on_event(NotifyEvent(sweep=True))
        time.sleep(1.5)
        assert all(len(mails(a)) == 1 for a in admins)
    finally:
        db.execute("delete from notification_rules where type = 'enrollment.created'")


def test_what_a_throttle_holds_back_is_folded_into_the_digest(stack, db):
    type = rule(db, throttle_limit=1, throttle_window="1 hour", digest_window="2 seconds")
    user, address = person(db)
    first = notify(db, user, type)
    wait_for(lambda: deliveries(db, first).get((user, "email")) == "sent")  # a digest of one
    later = [notify(db, user, type) for _ in range(3)]
    # The throttle is used up: the three wait as one digest, which stays open while throttled.
    wait_for(lambda: sorted(reasons(db, n)[(user, "email")][1] or "" for n in later
                            if (user, "email") in reasons(db, n)) == ["digest", "digested", "digested"])
    time.sleep(3)
    assert len(mailbox(stack, to=address)) == 1
    db.execute("delete from notification_deliveries where notification_id = %s", (first,))
    wait_for(lambda: len(mailbox(stack, to=address)) == 2)
    assert [m["subject"] for m in mailbox(stack, to=address)].count("Title and 2 more") == 1


def test_explain_gives_each_recipient_and_channel_its_decision_and_rule(stack, db):
    type = rule(db, throttle_limit=5, throttle_window="1 hour")
    org = str(uuid.uuid4())
    (opted, _), (blocked, blocked_address), (quiet, _), (plain, _) = (
        person(db, org, "admin") for _ in range(4))
    db.execute("insert into notification_preferences (user_id, type, channel, enabled) "
               "values (%s, %s, 'email', false)", (opted, type))
    db.execute("insert into notification_suppressions (address, channel, reason) "
               "values (%s, 'email', 'bounce')", (blocked_address,))
    db.execute("insert into notification_settings (user_id, quiet_hours_start, quiet_hours_end) "
               "values (%s, '00:00', '23:59:59')", (quiet,))
    draft = {"organization_id": org, "role_target": ["admin"], "type": type, "title": "T",
             "message": "M", "delivery_method": ["in_app", "email", "sms"]}
    service = stack.key("service_role")
    assert call_json(stack, "POST", "/api/notifications/explain", token=user_token(plain),
                     body=draft)[0] == 403
    status, answer = call_json(stack, "POST", "/api/notifications/explain", token=service,
                               body=draft)
    assert status == 200 and answer["notification_id"] is None
    got = {(v["user_id"], v["channel"]): (v["decision"], v["reason"], v["rule"], v["target"])
           for v in answer["verdicts"]}
    sms_rule = ("skip", "sms_requires_high_priority", "sms priorities (RIPPLE_SMS_PRIORITIES)",
                "role_target: admin")
    assert got == {
        (opted, "email"): ("skip", "opted_out", "preference (notification_preferences)",
                           "role_target: admin"),
        (blocked, "email"): ("suppress", "suppressed",
                             "suppression list (notification_suppressions)", "role_target: admin"),
        (quiet, "email"): ("defer", "quiet_hours", "quiet hours (notification_settings)",
                           "role_target: admin"),
        (plain, "email"): ("send", None, None, "role_target: admin"),
        **{(u, "sms"): sms_rule for u in (opted, blocked, quiet, plain)}}
    # A draft leaves nothing behind.
    assert db.execute("select count(*) from notifications where organization_id = %s",
                      (org,)).fetchone() == (0,)

    created = str(db.execute(
        "insert into notifications (organization_id, role_target, type, title, message, "
        "delivery_method) values (%s, '{admin}', %s, 'T', 'M', '{in_app,email,sms}') returning id",
        (org, type)).fetchone()[0])
    wait_for(lambda: len(reasons(db, created)) == 8)
    status, answer = call_json(stack, "GET", f"/api/notifications/{created}/explain", token=service)
    assert status == 200
    recorded = {(v["user_id"], v["channel"]): v["recorded"]["status"] for v in answer["verdicts"]}
    assert recorded[(plain, "email")] == "sent" and recorded[(quiet, "email")] == "deferred"
    assert recorded[(blocked, "email")] == "suppressed" and recorded[(opted, "email")] == "skipped"
    assert call_json(stack, "GET", f"/api/notifications/{uuid.uuid4()}/explain",
                     token=service)[0] == 404

    rows = db.execute("select user_id::text, channel, target, preference_enabled, suppressed, "
                      "quiet_hours is not null, rule ->> 'throttle_limit', status, reason "
                      "from notification_explain(%s)", (created,)).fetchall()
    by = {(r[0], r[1]): r[2:] for r in rows}
    assert by[(opted, "email")] == ("role_target: admin", False, False, False, "5", "skipped",
                                    "opted_out")
    assert by[(blocked, "email")][2] is True and by[(quiet, "email")][3] is True
    assert by[(plain, "email")][-2:] == ("sent", None)
    assert len(rows) == 8

    lost = str(uuid.uuid4())
    unknown = notify(db, lost, type, delivery="{in_app,email}")
    wait_for(lambda: reasons(db, unknown))
    assert db.execute("select target, status, reason from notification_explain(%s)",
                      (unknown,)).fetchall() == [("user_id", "failed", "recipient_unknown")]
    status, answer = call_json(stack, "GET", f"/api/notifications/{unknown}/explain", token=service)
    assert [(v["decision"], v["reason"]) for v in answer["verdicts"]] == [
        ("fail", "recipient_unknown")]
