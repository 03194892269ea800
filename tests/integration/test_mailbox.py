"""The local mailbox against email and SMS sent with boto3 through a moto server in this process."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage

import boto3
import pytest
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from ripple.local.mailbox import Mailbox, sms_segments

pytestmark = pytest.mark.timeout(30)

SENDER = "Ripple <noreply@ripple.test>"
ADA = "ada@example.com"
GRACE = "grace@example.com"
KEYS = {"id", "channel", "to", "from", "subject", "html", "text", "headers", "segments",
        "created_at"}


@pytest.fixture(scope="module")
def aws() -> Iterator[dict]:
    """boto3 client arguments for a moto server of this module's own, with the sender verified."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    kwargs = {"endpoint_url": f"http://127.0.0.1:{server._server.server_port}",
              "region_name": "us-east-1", "aws_access_key_id": "local",
              "aws_secret_access_key": "local"}
    boto3.client("sesv2", **kwargs).create_email_identity(EmailIdentity="ripple.test")
    yield kwargs
    server.stop()


@pytest.fixture(scope="module")
def mailbox(aws: dict) -> Iterator[Mailbox]:
    """A mailbox on a free port, served from an event loop on a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    box = Mailbox(port=0)
    asyncio.run_coroutine_threadsafe(box.start(), loop).result(10)
    yield box
    asyncio.run_coroutine_threadsafe(box.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def call(mailbox: Mailbox, path: str, method: str = "GET") -> tuple[int, dict, str]:
    request = urllib.request.Request(mailbox.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def messages(mailbox: Mailbox, query: str = "") -> list[dict]:
    status, _, body = call(mailbox, "/api/messages" + query)
    assert status == 200, body
    return json.loads(body)


def send_email(aws: dict, to: str, subject: str, *, html: str | None = None,
               text: str | None = None) -> str:
    body = {"Html": {"Data": html}} if html is not None else {}
    if text is not None:
        body["Text"] = {"Data": text}
    return boto3.client("sesv2", **aws).send_email(
        FromEmailAddress=SENDER, Destination={"ToAddresses": [to]},
        Content={"Simple": {"Subject": {"Data": subject}, "Body": body, "Headers": [
            {"Name": "List-Unsubscribe", "Value": "<https://app.test/unsubscribe/1>"}]}},
        ConfigurationSetName="ripple")["MessageId"]


def send_sms(aws: dict, number: str, message: str) -> str:
    return boto3.client("sns", **aws).publish(
        PhoneNumber=number, Message=message, MessageAttributes={
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}},
    )["MessageId"]


@pytest.fixture
def sent(aws: dict, mailbox: Mailbox) -> dict[str, str]:
    """Two emails and two SMS on a clean mailbox, by name → moto message id."""
    assert call(mailbox, "/api/messages", "DELETE")[0] == 204
    return {
        "welcome": send_email(aws, ADA, "Welcome, Ada", text="Hi Ada,\nwelcome aboard."),
        "evil": send_email(aws, GRACE, "<script>alert('subject')</script> & more",
                           html="<h1>Hello</h1><script>alert('body')</script>\"'<p>bye</p>",
                           text="Hello"),
        "code": send_sms(aws, "+15550100", "Your code is 123456"),
        "emoji": send_sms(aws, "+15550199", "Deploy finished 🚀 " + "ok " * 30),
    }


def test_lists_everything_newest_first(mailbox: Mailbox, sent: dict[str, str]) -> None:
    listed = messages(mailbox)

    assert [m["id"] for m in listed] == [sent[k] for k in ("emoji", "code", "evil", "welcome")]
    assert all(set(m) == KEYS for m in listed)
    times = [datetime.fromisoformat(m["created_at"]) for m in listed]
    assert all(m["created_at"].endswith("Z") for m in listed)
    assert times == sorted(times, reverse=True)

    emoji, code, evil, welcome = listed
    assert code == {**code, "channel": "sms", "to": "+15550100", "from": None, "subject": None,
                    "html": None, "text": "Your code is 123456", "headers": {}, "segments": 1}
    assert emoji["segments"] == sms_segments(emoji["text"]) == 2  # UCS-2: 67 per part
    assert welcome == {**welcome, "channel": "email", "to": ADA, "from": SENDER,
                       "subject": "Welcome, Ada", "html": None, "text": "Hi Ada,\nwelcome aboard.",
                       "segments": None}
    # moto keeps the HTML part of a Simple email and drops its text part and headers.
    assert evil == {**evil, "to": GRACE, "text": None, "headers": {},
                    "html": "<h1>Hello</h1><script>alert('body')</script>\"'<p>bye</p>"}


def test_filters_by_channel_and_recipient(mailbox: Mailbox, sent: dict[str, str]) -> None:
    assert [m["id"] for m in messages(mailbox, "?channel=email")] == [sent["evil"], sent["welcome"]]
    assert [m["id"] for m in messages(mailbox, "?channel=sms")] == [sent["emoji"], sent["code"]]
    assert [m["id"] for m in messages(mailbox, "?to=ADA@example.com")] == [sent["welcome"]]
    assert [m["id"] for m in messages(mailbox, "?to=%2B15550100")] == [sent["code"]]
    assert [m["id"] for m in messages(mailbox, "?to=+15550100")] == [sent["code"]]
    assert messages(mailbox, "?channel=sms&to=" + ADA) == []
    assert call(mailbox, "/api/messages?channel=fax")[0] == 400


def test_page_escapes_message_content(mailbox: Mailbox, sent: dict[str, str]) -> None:
    status, headers, page = call(mailbox, "/")

    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt; &amp; more" in page
    assert ('srcdoc="&lt;h1&gt;Hello&lt;/h1&gt;&lt;script&gt;alert(&#x27;body&#x27;)'
            "&lt;/script&gt;&quot;&#x27;&lt;p&gt;bye&lt;/p&gt;\"") in page
    assert 'sandbox=""' in page
    assert "alert(" not in page.replace("alert(&#x27;", "")
    assert page.count("<script") == 1  # the page's own refresh script
    assert "Welcome, Ada" in page and "Your code is 123456" in page and "2 segments" in page
    assert page.index("Your code is 123456") < page.index("Welcome, Ada")

    _, _, sms_only = call(mailbox, "/?channel=sms")
    assert "Your code is 123456" in sms_only and "Welcome, Ada" not in sms_only


def test_delete_clears_moto(aws: dict, mailbox: Mailbox, sent: dict[str, str]) -> None:
    assert call(mailbox, "/api/messages", "DELETE")[0] == 204

    assert messages(mailbox) == []
    assert list(ses_backends["123456789012"]["us-east-1"].sent_messages) == []
    assert "Nothing sent yet" in call(mailbox, "/")[2]

    later = send_sms(aws, "+15550100", "still here")
    assert [m["id"] for m in messages(mailbox)] == [later]


def test_raw_email_keeps_both_parts_and_headers(aws: dict, mailbox: Mailbox) -> None:
    call(mailbox, "/api/messages", "DELETE")
    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = SENDER, ADA, "Raw one"
    mime["List-Unsubscribe"] = "<https://app.test/unsubscribe/2>"
    mime.set_content("plain part\n")
    mime.add_alternative("<p>html part</p>\n", subtype="html")
    boto3.client("sesv2", **aws).send_email(
        FromEmailAddress=SENDER, Destination={"ToAddresses": [ADA]},
        Content={"Raw": {"Data": mime.as_bytes()}})

    [raw] = messages(mailbox)
    assert raw["subject"] == "Raw one" and raw["to"] == ADA and raw["from"] == SENDER
    assert raw["text"] == "plain part\n" and raw["html"] == "<p>html part</p>\n"
    assert raw["headers"]["List-Unsubscribe"] == "<https://app.test/unsubscribe/2>"


def test_health(mailbox: Mailbox) -> None:
    assert call(mailbox, "/health")[:1] == (200,)
