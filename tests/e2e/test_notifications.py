"""Database events become in-app, email and SMS notifications, each delivered exactly once."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid
from email.utils import parseaddr

import boto3
import jwt
import pytest
from botocore.stub import Stubber

from ripple.local.postgres import apply_file
from ripple.local.stack import DEV_JWT_SECRET, ROOT
from ripple.notify.models import RenderedEmail
from ripple.notify.providers import Mailer, SendError
from tests.e2e.wire import Wire


@pytest.fixture
def school(db):
    apply_file(db, ROOT / "sql" / "examples" / "school_crm.sql")
    org = str(uuid.uuid4())
    admins = [str(uuid.uuid4()) for _ in range(2)]
    for n, admin in enumerate(admins):
        db.execute("insert into profiles (id, organization_id, role, full_name, email, phone) "
                   "values (%s, %s, 'admin', %s, %s, %s)", (admin, org, f"Admin {n}", f"Admin{n}.{org[:8]}@School.test",
                                                            "+14155550100" if n == 0 else "555-0100"))
    group = db.execute("insert into groups (organization_id, name, capacity) values (%s, 'Piano', 10) returning id",
                       (org,)).fetchone()[0]
    return {"db": db, "org": org, "admins": admins, "group": group}


def mailbox(stack, **query) -> list[dict]:
    url = f"{stack.mail_url}/api/messages"
    if query:
        url += "?" + "&".join(f"{k}={urllib.request.quote(v)}" for k, v in query.items())
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def deliveries(db, notification_id) -> dict[tuple[str, str], str]:
    rows = db.execute("select user_id::text, channel, status from notification_deliveries "
                      "where notification_id = %s", (notification_id,)).fetchall()
    return {(u, c): s for u, c, s in rows}


def user_token(sub: str) -> str:
    return jwt.encode({"role": "authenticated", "sub": sub, "exp": int(time.time()) + 600},
                      DEV_JWT_SECRET, algorithm="HS256")


def opted_out_number() -> str:
    """A valid number the AWS stand-in reports opted out (it ends in 99), one of 80,000."""
    n = uuid.uuid4().int
    return f"+1415{200 + n % 800}{n // 800 % 100:02d}99"


def _opted_out_text(db) -> tuple[str, str]:
    """A text to a number that opted out (the AWS stand-in reports every number ending in 99 so):
    it is sent to no one and its delivery row ends `suppressed`. Returns (notification, user)."""
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email, phone) values (%s, 'member', 'O', %s, %s)",
               (user, f"{user}@optout.test", opted_out_number()))
    notification = db.execute("insert into notifications (user_id, type, title, message, priority, delivery_method) "
                              "values (%s, 'alarm', 'Now', 'wake up', 'high', '{sms}') returning id",
                              (user,)).fetchone()[0]
    return notification, user


def test_an_enrollment_emails_the_admins_and_reaches_them_in_app(stack, school):
    db, org, (admin, other_admin) = school["db"], school["org"], school["admins"]
    inbox = Wire(stack.ws_url, user_token(admin))
    try:
        inbox.join("realtime:inbox", [{"event": "INSERT", "schema": "public", "table": "notifications",
                                       "filter": f"user_id=eq.{admin}"}])
        student = db.execute("insert into students (organization_id, full_name) values (%s, 'Ada') returning id",
                             (org,)).fetchone()[0]
        db.execute("insert into student_group_enrollments (student_id, group_id) values (%s, %s)",
                   (student, school["group"]))
        record = inbox.recv(timeout=15)["payload"]["data"]["record"]
        assert record["type"] == "enrollment.created" and record["user_id"] == admin
        original = db.execute("select id from notifications where type = 'enrollment.created' "
                              "and organization_id = %s and parent_id is null", (org,)).fetchone()[0]
        mails = wait_for(lambda: [m for m in mailbox(stack, channel="email")
                                  if org[:8].lower() in m["to"]] if len(
            [m for m in mailbox(stack, channel="email") if org[:8].lower() in m["to"]]) == 2 else None)
        assert sorted(parseaddr(m["to"])[1] for m in mails) == sorted([f"admin0.{org[:8]}@school.test",
                                                         f"admin1.{org[:8]}@school.test"])
        mail = mails[0]
        assert "List-Unsubscribe" in mail["headers"] and "One-Click" in mail["headers"]["List-Unsubscribe-Post"]
        assert mail["html"] and mail["text"]
        # Each outcome is committed just after its send, so the mail can show before its row does.
        status = wait_for(lambda: s if (s := deliveries(db, original)).get((other_admin, "email")) == "sent"
                          and s.get((admin, "email")) == "sent" else None)
        assert status[(admin, "email")] == "sent" and status[(other_admin, "email")] == "sent"
        assert not any(channel == "sms" for _, channel in status)  # enrollment is in_app + email
        # A duplicate wake-up or a retry sends nothing twice.
        before = len(mailbox(stack))
        from ripple.notify.handler import NotifyEvent, on_event

        on_event(NotifyEvent(notification_id=original))
        db.execute("insert into realtime.outbox (kind, payload) values ('notification', %s)",
                   (json.dumps({"notification_id": str(original)}),))
        # The control: a notification woken after the duplicate, which ends without a send (the
        # number opted out), so the delivery function has been past the duplicate when it is done.
        control, user = _opted_out_text(db)
        wait_for(lambda: deliveries(db, control).get((user, "sms")) == "suppressed")
        time.sleep(2.5)
        assert len(mailbox(stack)) == before
    finally:
        inbox.close()


def test_overdue_payment_texts_only_valid_numbers_and_respects_preferences(stack, school):
    db, org = school["db"], school["org"]
    good, bad, opted = (str(uuid.uuid4()) for _ in range(3))
    for user, phone in ((good, "+14155550123"), (bad, "12345"), (opted, "+14155550124")):
        db.execute("insert into profiles (id, organization_id, role, full_name, email, phone) "
                   "values (%s, %s, 'student', 'S', %s, %s)", (user, org, f"{user}@school.test", phone))
    db.execute("insert into notification_preferences (user_id, type, channel, enabled) "
               "values (%s, 'payment.overdue', 'sms', false)", (opted,))
    ids = []
    for user in (good, bad, opted):
        ids.append(db.execute("insert into students (organization_id, user_id, full_name) values (%s, %s, 'S') "
                              "returning id", (org, user)).fetchone()[0])
    db.execute("update students set payment_status = 'overdue' where id = any(%s)", (ids,))

    def statuses():
        rows = db.execute("select d.user_id::text, d.channel, d.status, d.reason from notification_deliveries d "
                          "join notifications n on n.id = d.notification_id "
                          "where n.type = 'payment.overdue' and n.organization_id = %s", (org,)).fetchall()
        done = {(u, c): (s, r) for u, c, s, r in rows}
        return done if len(done) >= 5 and all(s != "queued" for s, _ in done.values()) else None

    done = wait_for(statuses)
    assert done[(good, "sms")] == ("sent", None)
    assert done[(bad, "sms")] == ("failed", "invalid_phone")
    assert (opted, "sms") not in done or done[(opted, "sms")][0] == "skipped"
    assert all(done[(u, "email")][0] == "sent" for u in (good, bad, opted))  # one bad phone stops no email
    texts = [m for m in mailbox(stack, channel="sms") if m["to"] in ("+14155550123", "+14155550124")]
    assert [m["to"] for m in texts] == ["+14155550123"]


def test_quiet_hours_defer_but_urgent_goes_through(stack, db):
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email) values (%s, 'member', 'Q', %s)",
               (user, f"{user}@quiet.test"))
    # A quiet window covering the whole day in UTC, minus one minute.
    now = db.execute("select (now() at time zone 'UTC')::time").fetchone()[0]
    db.execute("insert into notification_settings (user_id, quiet_hours_start, quiet_hours_end, timezone) "
               "values (%s, %s::time - interval '1 minute', %s::time - interval '2 minutes', 'UTC')",
               (user, now, now))
    normal = db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
                        "values (%s, 'digest', 'Later', 'quiet please', '{email}') returning id", (user,)).fetchone()[0]
    urgent = db.execute("insert into notifications (user_id, type, title, message, priority, delivery_method) "
                        "values (%s, 'alarm', 'Now', 'wake up', 'urgent', '{email}') returning id",
                        (user,)).fetchone()[0]
    wait_for(lambda: deliveries(db, urgent).get((user, "email")) == "sent")
    wait_for(lambda: deliveries(db, normal).get((user, "email")) == "deferred")
    due = db.execute("select next_attempt_at > now() from notification_deliveries where notification_id = %s",
                     (normal,)).fetchone()[0]
    assert due is True
    assert [m["subject"] for m in mailbox(stack, to=f"{user}@quiet.test")] == ["Now"]
    # When the window opens, the delivery function's sweep sends what was deferred.
    db.execute("update notification_deliveries set next_attempt_at = now() - interval '1 second' "
               "where notification_id = %s", (normal,))
    wait_for(lambda: deliveries(db, normal).get((user, "email")) == "sent")
    assert sorted(m["subject"] for m in mailbox(stack, to=f"{user}@quiet.test")) == ["Later", "Now"]


def test_a_throttled_send_is_retried_and_a_rejection_is_final():
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    mailer = Mailer(client, "Ripple <n@ripple.test>", sleep=lambda _: None)
    email = RenderedEmail(subject="s", html="<p>h</p>", text="t")
    with Stubber(client) as stub:
        stub.add_client_error("send_email", "TooManyRequestsException", http_status_code=429)
        stub.add_client_error("send_email", "TooManyRequestsException", http_status_code=429)
        stub.add_response("send_email", {"MessageId": "m-1"})
        assert mailer.send("a@b.test", None, email, {}) == ("m-1", 3)
        stub.add_client_error("send_email", "MessageRejected", http_status_code=400)
        with pytest.raises(SendError) as rejected:
            mailer.send("a@b.test", None, email, {})
        assert rejected.value.outcome == "permanent" and rejected.value.attempts == 1


def _sns(message: dict) -> dict:
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(message)}}]}


def test_a_bounce_marks_the_delivery_and_suppresses_the_next_send(stack, db):
    from ripple.notify.feedback import on_sns

    user = str(uuid.uuid4())
    address = f"{user}@bounce.test"
    db.execute("insert into profiles (id, role, full_name, email) values (%s, 'member', 'B', %s)", (user, address))
    first = db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
                       "values (%s, 'news', 'One', 'first', '{email}') returning id", (user,)).fetchone()[0]
    wait_for(lambda: deliveries(db, first).get((user, "email")) == "sent")
    message_id = db.execute("select provider_message_id from notification_deliveries where notification_id = %s",
                            (first,)).fetchone()[0]
    assert on_sns(_sns({"eventType": "Delivery", "mail": {"messageId": message_id}}))["deliveries"] == 1
    assert deliveries(db, first)[(user, "email")] == "delivered"
    bounce = {"eventType": "Bounce", "mail": {"messageId": message_id},
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                         "bouncedRecipients": [{"emailAddress": address.upper()}]}}
    assert on_sns(_sns(bounce)) == {"events": 1, "deliveries": 1, "suppressions": 1, "skipped": 0}
    assert deliveries(db, first)[(user, "email")] == "bounced"
    assert on_sns({"Records": [{"Sns": {"Message": "not json"}}]})["skipped"] == 1

    second = db.execute("insert into notifications (user_id, type, title, message, delivery_method) "
                        "values (%s, 'news', 'Two', 'second', '{email}') returning id", (user,)).fetchone()[0]
    wait_for(lambda: deliveries(db, second).get((user, "email")) == "suppressed")
    assert [m["subject"] for m in mailbox(stack, to=address)] == ["One"]


def test_a_number_that_opted_out_of_sms_is_suppressed_and_remembered(stack, db):
    # The AWS stand-in reports every number ending in 99 as opted out (STOP).
    phone = opted_out_number()
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email, phone) values (%s, 'member', 'O', %s, %s)",
               (user, f"{user}@optout.test", phone))
    notification = db.execute("insert into notifications (user_id, type, title, message, priority, delivery_method) "
                              "values (%s, 'alarm', 'Now', 'wake up', 'high', '{sms}') returning id",
                              (user,)).fetchone()[0]
    wait_for(lambda: deliveries(db, notification).get((user, "sms")) == "suppressed")
    assert db.execute("select reason, attempts from notification_deliveries where notification_id = %s",
                      (notification,)).fetchone() == ("opted_out", 0)
    assert db.execute("select channel, reason from notification_suppressions where address = %s",
                      (phone,)).fetchone() == ("sms", "opt_out")
    assert mailbox(stack, channel="sms", to=phone) == []


def test_a_wake_up_without_a_notification_id_is_dropped_and_holds_nothing_up(stack, db):
    with db.transaction():
        # A malformed wake-up first in the queue, then a real notification in the same commit.
        (bad,) = db.execute("insert into realtime.outbox (kind, payload) values ('notification', '{}') "
                            "returning id").fetchone()
        control, user = _opted_out_text(db)
    wait_for(lambda: deliveries(db, control).get((user, "sms")) == "suppressed")
    assert wait_for(lambda: db.execute("select count(*) = 0 from realtime.outbox where id = %s",
                                       (bad,)).fetchone()[0])


def test_a_direct_invoke_creates_the_notification_and_delivers_it(stack, db):
    from ripple.local.stack import load_handler

    user = str(uuid.uuid4())
    address = f"{user}@invoke.test"
    db.execute("insert into profiles (id, role, full_name, email) values (%s, 'member', 'Ivy', %s)", (user, address))
    # As `aws lambda invoke --function-name <NotifyFunctionArn> --payload '{"notification": {...}}'`.
    result = load_handler("notify").handler({"notification": {
        "user_id": user, "type": "invoice.paid", "title": "Invoice paid", "message": "Invoice 42 is paid",
        "priority": "normal", "delivery_method": ["in_app", "email"], "action_url": "https://app.test/i/42",
        "data": {"invoice": 42}}}, None)
    assert result["notifications"] == 1

    row = db.execute("select id, type, title, delivery_method, action_url, data, parent_id from notifications "
                     "where user_id = %s", (user,)).fetchone()
    assert row[1:] == ("invoice.paid", "Invoice paid", ["in_app", "email"], "https://app.test/i/42",
                       {"invoice": 42}, None)
    # The insert also woke the delivery function through the outbox; the claim keeps it to one send.
    wait_for(lambda: deliveries(db, row[0]).get((user, "email")) == "sent")
    control, texted = _opted_out_text(db)  # woken after it: when it is done, so is the wake-up
    wait_for(lambda: deliveries(db, control).get((texted, "sms")) == "suppressed")
    time.sleep(1.5)
    mails = mailbox(stack, to=address)
    assert [m["subject"] for m in mails] == ["Invoice paid"]
    assert "Invoice 42 is paid" in mails[0]["text"]
