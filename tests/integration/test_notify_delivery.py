"""The courier (ripple.notify.delivery) against real Postgres and templates, with SESv2 and SNS
stubbed or a local provider that loses its answers: what it asks the providers for, what it
records when they refuse, and that a send which may have arrived is made once."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import urllib.parse
import uuid
from collections.abc import Iterator

import boto3
import psycopg
import pytest
from botocore.stub import ANY, Stubber
from psycopg.conninfo import make_conninfo

from ripple.aws import _SEND_CONFIG
from ripple.config import Settings
from ripple.db import Database
from ripple.local.postgres import migrate
from ripple.local.stack import ROOT
from ripple.notify.delivery import Courier, Report
from ripple.notify.feedback import FeedbackRecorder, parse
from ripple.notify.providers import DELIVERY_TAG, Mailer, Texter
from ripple.notify.sms import segments
from ripple.notify.templates import Templates
from ripple.notify.unsubscribe import read_token
from tests.lossy_provider import LossyProvider, nothing_listening

SENDER = "Ripple <notifications@ripple.test>"
SECRET = "courier-test-secret"
PUBLIC_URL = "https://ripple.example"


@pytest.fixture(scope="module")
def database(stack) -> Iterator[str]:
    """A database of its own, migrated as the stack's is. The local bridge neither wakes nor
    sweeps it, so the courier under test is the only one delivering there."""
    name = f"courier_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = make_conninfo(stack.db_url, dbname=name)
    migrate(url, ROOT / "sql")
    yield url
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


@pytest.fixture
def db(database) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True) as conn:
        # Every test starts with no deliveries, so a sweep sends only what the test made due.
        conn.execute("truncate public.notifications cascade")
        yield conn


@pytest.fixture
def ses() -> Iterator[Stubber]:
    with Stubber(_client("sesv2")) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def sns() -> Iterator[Stubber]:
    with Stubber(_client("sns")) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def courier(database: str, ses: Stubber, sns: Stubber, **settings) -> Courier:
    config = Settings(public_url=PUBLIC_URL, **settings)
    return Courier(db=Database(database),
                   mailer=Mailer(ses.client, SENDER, config.ses_configuration_set,
                                 sleep=lambda _: None),
                   texter=Texter(sns.client, config.sms_sender_id, sleep=lambda _: None),
                   templates=Templates(), config=config, secret=SECRET)


def requests(client, operation: str) -> list[dict]:
    """The parameters of every `operation` call the client makes from now on."""
    seen: list[dict] = []
    client.meta.events.register(f"provide-client-params.{client.meta.service_model.service_id.hyphenize()}"
                                f".{operation}", lambda params, **_: seen.append(params))
    return seen


def person(db, *, email: str | None = None, phone: str | None = None, name: str = "Ada") -> str:
    user = str(uuid.uuid4())
    db.execute("insert into profiles (id, role, full_name, email, phone) values (%s, 'member', %s, %s, %s)",
               (user, name, email or f"{user}@courier.test", phone))
    return user


def notify(db, user: str, *, channels=("email",), priority="normal", type="invoice.paid",
           title="Paid", message="Invoice 42 is paid") -> str:
    return str(db.execute(
        "insert into notifications (user_id, type, title, message, priority, delivery_method) "
        "values (%s, %s, %s, %s, %s, %s) returning id",
        (user, type, title, message, priority, list(channels))).fetchone()[0])


def delivery(db, notification_id: str, channel: str = "email") -> dict:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("select *, next_attempt_at > now() as waiting from notification_deliveries "
                       "where notification_id = %s and channel = %s",
                       (notification_id, channel)).fetchone()


def make_due(db, notification_id: str) -> None:
    db.execute("update notification_deliveries set next_attempt_at = now() - interval '1 second' "
               "where notification_id = %s", (notification_id,))


def throttle(ses: Stubber, times: int) -> None:
    for _ in range(times):
        ses.add_client_error("send_email", "TooManyRequestsException", http_status_code=429)


# -- what the providers are asked --------------------------------------------------------------

def test_an_email_names_the_configuration_set_and_offers_one_click_unsubscribe(database, db, ses, sns):
    user = person(db)
    address = f"{user}@courier.test"
    sent = requests(ses.client, "SendEmail")
    ses.add_response("send_email", {"MessageId": "ses-1"},
                     {"FromEmailAddress": SENDER, "Destination": {"ToAddresses": [address]},
                      "Content": ANY, "ConfigurationSetName": "ripple-events", "EmailTags": ANY})
    notification = notify(db, user)
    courier(database, ses, sns, ses_configuration_set="ripple-events").deliver(notification, Report())

    message = email.message_from_bytes(sent[0]["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{PUBLIC_URL}/api/unsubscribe?token=")
    asked = read_token(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0], SECRET)
    assert (str(asked.user_id), asked.type, asked.channel) == (user, "invoice.paid", "email")
    assert message.get_body(("plain",)) and message.get_body(("html",))
    row = delivery(db, notification)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", "ses-1", 1)
    # SES repeats the tag in the email's events, so feedback can find a send whose answer was lost.
    assert sent[0]["EmailTags"] == [{"Name": DELIVERY_TAG, "Value": str(row["id"])}]


@pytest.mark.parametrize("priority, sms_type", [("low", "Promotional"), ("normal", "Promotional"),
                                                ("high", "Transactional"), ("urgent", "Transactional")])
def test_an_sms_has_the_priority_s_type_the_sender_id_and_fits_its_segments(database, db, ses, sns,
                                                                          priority, sms_type):
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    user = person(db, phone=phone)
    published = requests(sns.client, "Publish")
    sns.add_response("check_if_phone_number_is_opted_out", {"isOptedOut": False}, {"phoneNumber": phone})
    sns.add_response("publish", {"MessageId": "sns-1"}, {
        "PhoneNumber": phone, "Message": ANY,
        "MessageAttributes": {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type},
            "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "Ripple"}}})
    notification = notify(db, user, channels=["sms"], priority=priority, title="Overdue",
                          message="Your payment is overdue. " * 40)
    courier(database, ses, sns, sms_sender_id="Ripple", sms_max_segments=2,
            sms_priorities=["low", "normal", "high", "urgent"]).deliver(notification, Report())

    body = published[0]["Message"]
    assert body.startswith("Overdue: Your payment is overdue.") and body.endswith("...")
    assert segments(body) == 2  # trimmed to the budget, not below it
    assert delivery(db, notification, "sms")["status"] == "sent"


# -- throttling --------------------------------------------------------------------------------

def test_a_throttled_email_is_sent_again_within_the_invocation(database, db, ses, sns):
    user = person(db)
    throttle(ses, 2)
    ses.add_response("send_email", {"MessageId": "ses-2"})
    notification = notify(db, user)
    report = Report()
    courier(database, ses, sns).deliver(notification, report)

    row = delivery(db, notification)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", "ses-2", 3)
    assert report.statuses == {"sent": 1}


def test_throttling_that_persists_defers_the_delivery_and_the_sweep_sends_it(database, db, ses, sns):
    user = person(db)
    throttle(ses, 4)
    notification = notify(db, user)
    c = courier(database, ses, sns)
    report = Report()
    c.deliver(notification, report)

    row = delivery(db, notification)
    assert (row["status"], row["reason"], row["attempts"]) == ("deferred", "retry: TooManyRequestsException", 4)
    assert row["waiting"] and row["provider_message_id"] is None
    assert report.statuses == {"deferred": 1}
    c.send_due(Report())  # not due yet: nothing is sent
    assert delivery(db, notification)["status"] == "deferred"

    make_due(db, notification)
    ses.add_response("send_email", {"MessageId": "ses-3"})
    report = Report()
    c.send_due(report)
    row = delivery(db, notification)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", "ses-3", 5)
    assert report.statuses == {"sent": 1}


def test_a_delivery_still_throttled_after_the_maximum_attempts_fails(database, db, ses, sns):
    user = person(db)
    notification = notify(db, user)
    c = courier(database, ses, sns, notify_max_attempts=6)
    throttle(ses, 4)
    c.deliver(notification, Report())
    first = delivery(db, notification)
    make_due(db, notification)
    throttle(ses, 2)  # the two sends the budget has left
    c.send_due(Report())

    row = delivery(db, notification)
    assert (row["status"], row["attempts"]) == ("failed", 6)
    assert row["reason"] == "TooManyRequestsException: gave up after 6 attempts"
    assert first["status"] == "deferred"


# -- one delivery's failure is its own -----------------------------------------------------------

def team(db, *emails: str) -> tuple[str, list[str]]:
    """An organization whose members (role 'staff') have these emails, in user id order."""
    org = str(uuid.uuid4())
    users = sorted(str(uuid.uuid4()) for _ in emails)
    for user, address in zip(users, emails):
        db.execute("insert into profiles (id, organization_id, role, full_name, email) "
                   "values (%s, %s, 'staff', 'S', %s)", (user, org, address.format(user=user)))
    return org, users


def notify_team(db, org: str) -> str:
    return str(db.execute(
        "insert into notifications (organization_id, role_target, type, title, message, delivery_method) "
        "values (%s, '{staff}', 'news', 'News', 'Hello', '{email}') returning id", (org,)).fetchone()[0])


def statuses(db, notification_id: str) -> dict[str, tuple[str, str | None, str | None]]:
    rows = db.execute("select user_id::text, status, reason, provider_message_id from notification_deliveries "
                      "where notification_id = %s", (notification_id,)).fetchall()
    return {user: (status, reason, message_id) for user, status, reason, message_id in rows}


class Unexpected(Exception):
    """Nothing the courier knows about."""


def test_an_unexpected_error_fails_only_that_delivery(database, db, ses, sns):
    org, (broken, fine, unicode) = team(db, "{user}@courier.test", "{user}@courier.test", "zoë.{user}@courier.test")
    address = db.execute("select email from profiles where id = %s", (broken,)).fetchone()[0]

    def break_one(params, **_):
        if params["Destination"]["ToAddresses"] == [address]:
            raise Unexpected

    ses.client.meta.events.register("provide-client-params.sesv2.SendEmail", break_one)
    ses.add_response("send_email", {"MessageId": "ses-4"})
    notification = notify_team(db, org)
    report = Report()
    courier(database, ses, sns).deliver(notification, report)

    assert statuses(db, notification) == {broken: ("failed", "error: Unexpected", None),
                                          fine: ("sent", None, "ses-4"),
                                          unicode: ("failed", "invalid_email", None)}
    assert report.statuses == {"failed": 2, "sent": 1}


class Halt(BaseException):
    """What a Lambda timeout is to the code it stops: nothing catches it."""


def test_each_outcome_is_recorded_as_soon_as_it_is_known(database, db, ses, sns):
    org, (first, second) = team(db, "{user}@courier.test", "{user}@courier.test")
    sent = requests(ses.client, "SendEmail")

    def stop_at_the_second_send(**_):
        if len(sent) == 2:
            raise Halt

    ses.client.meta.events.register("provide-client-params.sesv2.SendEmail", stop_at_the_second_send)
    ses.add_response("send_email", {"MessageId": "ses-5"})
    notification = notify_team(db, org)
    with pytest.raises(Halt):
        courier(database, ses, sns).deliver(notification, Report())

    assert statuses(db, notification) == {first: ("sent", None, "ses-5"), second: ("queued", None, None)}


# -- deferred deliveries are planned again when due ---------------------------------------------

@pytest.mark.parametrize("change, status, reason", [
    (None, "sent", None),
    ("insert into notification_suppressions (address, channel, reason) "
     "select lower(email), 'email', 'bounce' from profiles where id = %(user)s", "suppressed", "suppressed"),
    ("insert into notification_preferences (user_id, type, channel, enabled) "
     "values (%(user)s, '*', 'email', false)", "skipped", "opted_out"),
    ("update profiles set deleted_at = now() where id = %(user)s", "failed", "recipient_gone"),
])
def test_a_deferred_delivery_is_checked_again_before_it_is_sent(database, db, ses, sns,
                                                              change, status, reason):
    user = person(db)
    # A quiet window covering the whole day but one minute.
    db.execute("insert into notification_settings (user_id, quiet_hours_start, quiet_hours_end, timezone) "
               "select %s, t - interval '1 minute', t - interval '2 minutes', 'UTC' "
               "from (select (now() at time zone 'UTC')::time as t) now", (user,))
    notification = notify(db, user)
    c = courier(database, ses, sns)
    c.deliver(notification, Report())
    assert (delivery(db, notification)["status"], delivery(db, notification)["reason"]) == ("deferred", "quiet_hours")

    if change:
        db.execute(change, {"user": user})
    else:
        ses.add_response("send_email", {"MessageId": "ses-6"})
    make_due(db, notification)
    report = Report()
    c.send_due(report)

    row = delivery(db, notification)
    assert (row["status"], row["reason"]) == (status, reason)
    assert report.statuses == {status: 1}


# -- a send whose answer is lost is made once ----------------------------------------------------

def courier_to(database: str, *, ses=None, sns=None) -> Courier:
    """A courier whose providers are real boto3 clients of a local endpoint."""
    config = Settings(public_url=PUBLIC_URL)
    return Courier(db=Database(database),
                   mailer=Mailer(ses or _client("sesv2"), SENDER, sleep=lambda _: None),
                   texter=Texter(sns or _client("sns"), sleep=lambda _: None),
                   templates=Templates(), config=config, secret=SECRET)


@pytest.mark.parametrize("mode, code", [("hang", "ReadTimeoutError"), ("hang_up", "ConnectionClosedError")])
def test_an_email_whose_answer_is_lost_is_unconfirmed_and_never_sent_again(database, db, mode, code):
    user = person(db)
    notification = notify(db, user)
    with LossyProvider("sesv2", mode) as provider:
        c = courier_to(database, ses=provider.client(read_timeout=0.5))
        report = Report()
        c.deliver(notification, report)
        row = delivery(db, notification)
        # A duplicate wake-up and the sweep find the claim, and the sweep takes only deferred rows.
        c.deliver(notification, Report())
        make_due(db, notification)
        c.send_due(Report())

    assert (row["status"], row["attempts"], row["provider_message_id"], row["sent_at"]) == (
        "unconfirmed", 1, None, None)
    assert row["reason"].startswith(f"{code}: ")
    assert report.statuses == {"unconfirmed": 1}
    assert len(provider.sends) == 1
    assert provider.email_tags() == {DELIVERY_TAG: str(row["id"])}
    assert delivery(db, notification)["status"] == "unconfirmed"


def test_an_sms_whose_answer_is_lost_is_unconfirmed_and_never_sent_again(database, db):
    user = person(db, phone="+14155550142")
    notification = notify(db, user, channels=("sms",), priority="high")
    with LossyProvider("sns", "hang_up") as provider:
        c = courier_to(database, sns=provider.client())
        report = Report()
        c.deliver(notification, report)
        c.deliver(notification, Report())

    row = delivery(db, notification, "sms")
    assert (row["status"], row["attempts"], row["provider_message_id"]) == ("unconfirmed", 1, None)
    assert row["reason"].startswith("ConnectionClosedError: ")
    assert report.statuses == {"unconfirmed": 1}
    assert len(provider.sends) == 1


def ses_event(kind: str, message_id: str, delivery_id: str | None, **fields) -> dict:
    """An SES configuration-set event as the feedback topic carries it."""
    mail = {"timestamp": "2026-03-01T10:00:00.123Z", "messageId": message_id, "source": SENDER,
            "tags": {"ses:configuration-set": ["ripple"]}}
    if delivery_id:
        mail["tags"][DELIVERY_TAG] = [delivery_id]
    return {"eventType": kind, "mail": mail, **fields}


def test_ses_feedback_settles_an_unconfirmed_email_by_the_delivery_it_is_tagged_with(database, db):
    address = f"{uuid.uuid4().hex[:10]}@courier.test"
    user = person(db, email=address)
    notification = notify(db, user)
    with LossyProvider("sesv2", "hang_up") as provider:
        courier_to(database, ses=provider.client()).deliver(notification, Report())
    tag = provider.email_tags()[DELIVERY_TAG]
    feedback = FeedbackRecorder(Database(database))

    # Another delivery's tag, a malformed one, or none at all settles nothing.
    for other in (str(uuid.uuid4()), "not-a-uuid", None):
        assert feedback.record(parse(ses_event("Delivery", "ses-other", other))) == {
            "deliveries": 0, "suppressions": 0}
    assert delivery(db, notification)["status"] == "unconfirmed"

    assert feedback.record(parse(ses_event("Delivery", "ses-late", tag))) == {"deliveries": 1, "suppressions": 0}
    row = delivery(db, notification)
    assert (row["status"], row["provider_message_id"]) == ("delivered", "ses-late")
    assert row["sent_at"] == dt.datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=dt.UTC)

    # From now on SES's message id finds it, as it finds any email that was sent.
    bounce = ses_event("Bounce", "ses-late", None, bounce={
        "bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [{"emailAddress": address}]})
    assert feedback.record(parse(bounce)) == {"deliveries": 1, "suppressions": 1}
    assert delivery(db, notification)["status"] == "bounced"


def test_a_provider_nobody_listens_on_is_retried_and_the_sweep_sends_when_it_is_back(database, db):
    user = person(db)
    notification = notify(db, user)
    unreachable = boto3.client("sesv2", endpoint_url=nothing_listening(), region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test", config=_SEND_CONFIG)
    report = Report()
    courier_to(database, ses=unreachable).deliver(notification, report)
    row = delivery(db, notification)
    assert (row["status"], row["reason"], row["attempts"]) == ("deferred", "retry: EndpointConnectionError", 4)
    assert report.statuses == {"deferred": 1}

    make_due(db, notification)
    with LossyProvider("sesv2", "accept") as provider:
        courier_to(database, ses=provider.client()).send_due(Report())
    row = delivery(db, notification)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", "ses-1", 5)
    assert len(provider.sends) == 1


STATUS_CHECK = ("select pg_get_constraintdef(oid) from pg_constraint "
                "where conname = 'notification_deliveries_status_check'")


def test_the_unconfirmed_status_migration_runs_again_and_keeps_statuses_others_allowed(database):
    migrate(database, ROOT / "sql")  # a second run, as every deploy makes
    with psycopg.connect(database) as conn:
        [before] = conn.execute(STATUS_CHECK).fetchone()
        with conn.transaction(force_rollback=True):
            # A status some other migration allowed, in a check written before 'unconfirmed'.
            conn.execute("alter table notification_deliveries drop constraint notification_deliveries_status_check")
            conn.execute("alter table notification_deliveries add constraint notification_deliveries_status_check "
                         "check (status in ('queued', 'sent', 'held'))")
            conn.execute((ROOT / "sql" / "011_unconfirmed_deliveries.sql").read_text())
            [rebuilt] = conn.execute(STATUS_CHECK).fetchone()
    assert "'held'::text" in rebuilt and "'unconfirmed'::text" in rebuilt and "'failed'" not in rebuilt
    assert before.count("'unconfirmed'::text") == 1 and "'deferred'::text" in before


def test_a_delivery_status_outside_the_list_is_still_refused(database, db):
    user = person(db)
    notification = notify(db, user)
    db.execute("insert into notification_deliveries (notification_id, user_id, channel, status) "
               "values (%s, %s, 'email', 'unconfirmed')", (notification, user))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("update notification_deliveries set status = 'lost' where notification_id = %s", (notification,))
