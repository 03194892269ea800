"""Delivery status webhooks end to end: signed calls to the local mailbox's receiver, retries
with backoff on a failing endpoint, the dead-letter after the last attempt, sends unblocked."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import psycopg
import pytest

from ripple.notify.webhooks import verify
from tests.e2e.test_notifications import deliveries, mailbox, user_token, wait_for
from tests.e2e.test_notifications_api import call_json

SECRET = "whsec_local_test_0123456789"


def calls(stack, name: str) -> list[dict]:
    with urllib.request.urlopen(f"{stack.mail_url}/api/webhooks?name={name}", timeout=10) as r:
        return json.loads(r.read())


def about(stack, name: str, notification_id: str) -> list[dict]:
    return [c for c in calls(stack, name)
            if json.loads(c["body"])["data"]["notification_id"] == notification_id]


@pytest.fixture
def hooks(stack, db):
    names = {kind: f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("ok", "flaky", "down")}
    urls = {"ok": f"{stack.mail_url}/webhooks/{names['ok']}",
            "flaky": f"{stack.mail_url}/webhooks/{names['flaky']}?fail=2",
            "down": f"{stack.mail_url}/webhooks/{names['down']}?fail=1000"}
    ids = {kind: str(db.execute(
        "insert into notification_webhooks (url, secret, events) values (%s, %s, %s) returning id",
        (url, SECRET, ["delivery.sent", "delivery.read"] if kind == "ok" else ["delivery.sent"])
    ).fetchone()[0]) for kind, url in urls.items()}
    yield names, ids
    db.execute("delete from notification_webhooks where id = any(%s)", (list(ids.values()),))


def test_signed_events_reach_the_endpoint_and_failures_are_retried(stack, db, hooks):
    names, ids = hooks
    user = str(uuid.uuid4())
    address = f"{user}@hooks.test"
    db.execute("insert into profiles (id, full_name, email) values (%s, 'W', %s)", (user, address))
    notification = str(db.execute(
        "insert into notifications (user_id, type, title, message, delivery_method) "
        "values (%s, 'invoice.paid', 'Paid', 'Invoice 42', '{in_app,email}') returning id",
        (user,)).fetchone()[0])
    # The failing endpoints hold nothing back: the email goes out at once.
    wait_for(lambda: deliveries(db, notification).get((user, "email")) == "sent")
    assert len(mailbox(stack, to=address)) == 1

    (sent,) = wait_for(lambda: about(stack, names["ok"], notification))
    body = sent["body"].encode()
    assert sent["headers"]["Ripple-Event"] == "delivery.sent"
    assert verify(SECRET, sent["headers"]["Ripple-Signature"], body, time.time())
    assert not verify("another-secret-0123456789", sent["headers"]["Ripple-Signature"], body,
                      time.time())
    event = json.loads(body)
    assert event["type"] == "delivery.sent" and event["data"]["channel"] == "email"
    assert event["data"]["user_id"] == user and event["data"]["provider_message_id"]

    status, _ = call_json(stack, "PATCH", f"/api/notifications/{notification}",
                          token=user_token(user), body={"read": True})
    assert status == 200
    read = wait_for(lambda: [c for c in about(stack, names["ok"], notification)
                             if c["headers"]["Ripple-Event"] == "delivery.read"])
    assert json.loads(read[0]["body"])["data"]["channel"] == "in_app"

    # 500, 500 (retried after 1 s, then 2 s), then 204: delivered on the third attempt.
    flaky = wait_for(lambda: [c for c in about(stack, names["flaky"], notification)
                              if c["status"] == 204], timeout=20)
    assert [c["status"] for c in reversed(about(stack, names["flaky"], notification))] == [
        500, 500, 204]
    assert len({c["headers"]["Ripple-Webhook-Id"] for c in about(stack, names["flaky"],
                                                                  notification)}) == 1
    assert flaky
    row = db.execute("select status, attempts, last_status from notification_webhook_calls "
                     "where webhook_id = %s and payload->'data'->>'notification_id' = %s",
                     (ids["flaky"], notification)).fetchone()
    assert row == ("delivered", 3, 204)

    # An endpoint that never answers 2xx: after the last attempt the call is left dead.
    down = "select status, attempts from notification_webhook_calls where webhook_id = %s " \
           "and payload->'data'->>'notification_id' = %s"
    wait_for(lambda: db.execute(down, (ids["down"], notification)).fetchone()[1] >= 1)
    db.execute("update notification_webhook_calls set attempts = 7, next_attempt_at = now() "
               "where webhook_id = %s", (ids["down"],))
    wait_for(lambda: db.execute(down, (ids["down"], notification)).fetchone() == ("dead", 8))
    before = len(about(stack, names["down"], notification))
    time.sleep(2.5)
    assert len(about(stack, names["down"], notification)) == before  # dead calls are not retried
    page = urllib.request.urlopen(stack.mail_url, timeout=10).read().decode()
    assert "Webhook calls" in page and names["ok"] in page


def test_a_webhook_must_be_https_or_this_machine(db):
    for url in ("http://example.com/hook", "ftp://example.com", "https://"):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("insert into notification_webhooks (url, secret) values (%s, %s)",
                       (url, SECRET))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("insert into notification_webhooks (url, secret) values (%s, 'short')",
                   ("https://example.com/hook",))
    db.execute("insert into notification_webhooks (url, secret, enabled) values (%s, %s, false) "
               "returning id", ("https://example.com/hook", SECRET))
    db.execute("delete from notification_webhooks where url = 'https://example.com/hook'")
