"""The two senders: email through SESv2, SMS through SNS. Thin adapters with retries.

Each send returns the provider's message id and the attempts it took, or raises SendError
carrying the outcome class: `permanent` or `suppress`; `retry` when throttling, a server
error or an unreachable endpoint outlasted the tries here — the caller sends again later; or
`unconfirmed` when the request may have reached the provider without its answer reaching us
(a read timeout, a connection closed after sending, an answer that cannot be read), which is
never sent again: at most once.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointConnectionFailure
from botocore.parsers import ResponseParserError

from ripple.notify.errors import Service, backoff, classify, unanswered
from ripple.notify.models import RenderedEmail

T = TypeVar("T")
# Sends within one invocation; a delivery still refused after them is deferred, not failed.
TRIES = 4
# The SES message tag carrying the delivery's id, so that feedback can settle an unconfirmed
# send: SES names each event's message by the id we never received.
DELIVERY_TAG = "ripple-delivery"


class SendError(Exception):
    """A send that did not happen, or may have: `outcome` is 'retry' (try again later),
    'permanent', 'suppress' or 'unconfirmed' (never try again); `code` is the provider's error
    code or the transport error's name, `attempts` the sends made."""

    def __init__(self, outcome: str, code: str, message: str, attempts: int):
        super().__init__(f"{code}: {message}")
        self.outcome, self.code, self.attempts = outcome, code, attempts


def attempt(service: Service, call: Callable[[], T], *, tries: int = TRIES,
            sleep: Callable[[float], None] = time.sleep, idempotent: bool = False) -> tuple[T, int]:
    """Run `call`, retrying throttling, server errors and unreachable endpoints with jittered
    backoff.

    Returns (result, attempts used); raises SendError when the call fails for good, with
    outcome 'retry' when it was still retryable after `tries` attempts, or 'unconfirmed' at
    once when the request may have arrived but no answer did — unless the call is
    `idempotent`, when that too is retried. Other errors (a malformed request, missing
    credentials) propagate unchanged.
    """
    for n in range(1, tries + 1):
        try:
            return call(), n
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            outcome = classify(service, code, status)
            if outcome != "retry" or n == tries:
                raise SendError(outcome, code, error.get("Message", ""), n) from None
        except (EndpointConnectionFailure, HTTPClientError, ResponseParserError) as exc:
            if not idempotent and unanswered(exc) == "unconfirmed":
                raise SendError("unconfirmed", type(exc).__name__, str(exc), n) from None
            if n == tries:
                raise SendError("retry", type(exc).__name__, str(exc), n) from None
        sleep(backoff(n))
    raise AssertionError("unreachable")


@dataclass
class Mailer:
    """SESv2 SendEmail with a raw MIME message: HTML + text parts and List-Unsubscribe headers."""

    client: Any
    sender: str
    configuration_set: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def send(self, to: str, name: str | None, email: RenderedEmail, headers: dict[str, str],
             tries: int = TRIES, delivery: str | None = None) -> tuple[str, int]:
        """Send one email; `delivery` (a delivery id) travels as the DELIVERY_TAG message tag,
        which SES repeats in the message's bounce, complaint and delivery events."""
        message = EmailMessage()
        message["From"] = self.sender
        # Header values are one line: a display name or subject taken from data may hold line
        # breaks, which would otherwise make the message impossible to build.
        message["To"] = formataddr((_one_line(name or ""), to))
        message["Subject"] = _one_line(email.subject)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].rstrip(">") or None)
        for key, value in headers.items():
            message[key] = value
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": message.as_bytes()}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        if delivery:
            request["EmailTags"] = [{"Name": DELIVERY_TAG, "Value": delivery}]
        answer, used = attempt("sesv2", lambda: self.client.send_email(**request), tries=tries,
                               sleep=self.sleep)
        return _message_id(answer, used)


@dataclass
class Texter:
    """SNS Publish to an E.164 number; high and urgent messages go as Transactional."""

    client: Any
    sender_id: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def opted_out(self, phone: str) -> bool:
        # A lookup, not a send: asking again after a lost answer changes nothing.
        answer, _ = attempt("sns", lambda: self.client.check_if_phone_number_is_opted_out(phoneNumber=phone),
                            sleep=self.sleep, idempotent=True)
        return bool(answer.get("isOptedOut"))

    def send(self, phone: str, body: str, transactional: bool,
             tries: int = TRIES) -> tuple[str, int]:
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String",
                                              "StringValue": "Transactional" if transactional else "Promotional"}}
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
        answer, used = attempt("sns", lambda: self.client.publish(
            PhoneNumber=phone, Message=body, MessageAttributes=attributes),
            tries=tries, sleep=self.sleep)
        return _message_id(answer, used)


def _message_id(answer: dict[str, Any], attempts: int) -> tuple[str, int]:
    # A success without the message id is an answer we could not read: the message may be out.
    message_id = answer.get("MessageId")
    if not isinstance(message_id, str) or not message_id:
        raise SendError("unconfirmed", "NoMessageId", "the provider's answer has no message id",
                        attempts)
    return message_id, attempts


def _one_line(text: str) -> str:
    return " ".join(text.split())
