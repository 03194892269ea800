"""The SESv2 and SNS adapters on real boto3 clients, with stubbed answers or a local provider
that loses its answers: the requests they make, how refusals come out, and that a send which
may have arrived is made once."""
from __future__ import annotations

import email
import email.policy

import boto3
import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError
from botocore.stub import ANY, Stubber

from ripple.aws import _SEND_CONFIG, Clients
from ripple.notify.models import RenderedEmail
from ripple.notify.providers import DELIVERY_TAG, Mailer, SendError, Texter, attempt
from tests.lossy_provider import LossyProvider, nothing_listening

MAIL = RenderedEmail(subject="Paid", html="<p>Invoice 42 is paid</p>", text="Invoice 42 is paid")
UNSUBSCRIBE = {"List-Unsubscribe": "<https://ripple.example/api/unsubscribe?token=t>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def requests(c, operation: str) -> list[dict]:
    seen: list[dict] = []
    c.meta.events.register(f"provide-client-params.{c.meta.service_model.service_id.hyphenize()}.{operation}",
                           lambda params, **_: seen.append(params))
    return seen


@pytest.mark.parametrize("configuration_set", ["ripple-events", None])
def test_an_email_is_raw_mime_with_the_unsubscribe_headers_and_the_configuration_set(configuration_set):
    ses = client("sesv2")
    sent = requests(ses, "SendEmail")
    expected = {"FromEmailAddress": "Ripple <n@ripple.test>", "Destination": {"ToAddresses": ["ada@example.com"]},
                "Content": ANY}
    if configuration_set:
        expected["ConfigurationSetName"] = configuration_set
    with Stubber(ses) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"}, expected)
        assert Mailer(ses, "Ripple <n@ripple.test>", configuration_set).send(
            "ada@example.com", "Ada Lovelace", MAIL, UNSUBSCRIBE) == ("m-1", 1)
    message = email.message_from_bytes(sent[0]["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert message["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["To"] == "Ada Lovelace <ada@example.com>" and message["Subject"] == "Paid"
    assert message.get_body(("plain",)).get_content().strip() == "Invoice 42 is paid"
    assert "<p>Invoice 42 is paid</p>" in message.get_body(("html",)).get_content()


def test_line_breaks_in_a_name_or_subject_do_not_break_the_message():
    ses = client("sesv2")
    sent = requests(ses, "SendEmail")
    with Stubber(ses) as stub:
        stub.add_response("send_email", {"MessageId": "m-2"})
        Mailer(ses, "Ripple <n@ripple.test>").send(
            "ada@example.com", "Ada\r\nBcc: eve@example.com", RenderedEmail(subject="Paid\nnow", html="h", text="t"), {})
    message = email.message_from_bytes(sent[0]["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert message["Subject"] == "Paid now" and message["Bcc"] is None
    assert message["To"].addresses[0].addr_spec == "ada@example.com"


@pytest.mark.parametrize("transactional, sms_type", [(True, "Transactional"), (False, "Promotional")])
@pytest.mark.parametrize("sender_id", ["Ripple", None])
def test_an_sms_names_its_type_and_sender_id(transactional, sms_type, sender_id):
    sns = client("sns")
    attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type}}
    if sender_id:
        attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
    with Stubber(sns) as stub:
        stub.add_response("publish", {"MessageId": "s-1"},
                          {"PhoneNumber": "+14155550100", "Message": "Hi", "MessageAttributes": attributes})
        assert Texter(sns, sender_id).send("+14155550100", "Hi", transactional) == ("s-1", 1)


def test_throttling_that_outlasts_the_tries_is_a_retry_not_a_failure():
    ses = client("sesv2")
    with Stubber(ses) as stub:
        for _ in range(3):
            stub.add_client_error("send_email", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(SendError) as refused:
            Mailer(ses, "n@ripple.test", sleep=lambda _: None).send("a@b.test", None, MAIL, {}, tries=3)
    assert (refused.value.outcome, refused.value.code, refused.value.attempts) == (
        "retry", "TooManyRequestsException", 3)


def test_an_sns_throttle_then_an_opt_out_is_a_suppression():
    sns = client("sns")
    with Stubber(sns) as stub:
        stub.add_client_error("publish", "Throttled", http_status_code=429)
        stub.add_client_error("publish", "OptedOut", http_status_code=400)
        with pytest.raises(SendError) as refused:
            Texter(sns, sleep=lambda _: None).send("+14155550100", "Hi", True)
    assert (refused.value.outcome, refused.value.attempts) == ("suppress", 2)


def test_an_unreachable_endpoint_is_retried_then_a_retry():
    waits: list[float] = []

    def unreachable():
        raise EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com")

    with pytest.raises(SendError) as refused:
        attempt("sesv2", unreachable, tries=3, sleep=waits.append)
    assert (refused.value.outcome, refused.value.code, refused.value.attempts) == (
        "retry", "EndpointConnectionError", 3)
    assert len(waits) == 2


def test_a_malformed_request_is_not_retried():
    calls = []

    def malformed():
        calls.append(1)
        raise ParamValidationError(report="Invalid type for parameter Destination")

    with pytest.raises(ParamValidationError):
        attempt("sesv2", malformed, sleep=lambda _: None)
    assert calls == [1]


# -- sends whose answer is lost: at most once ----------------------------------------------------

@pytest.mark.parametrize("lost", [
    ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com"),
    ResponseParserError("Unable to parse response"),
], ids=lambda e: type(e).__name__)
def test_a_send_that_may_have_arrived_is_not_retried(lost):
    calls = []

    def send():
        calls.append(1)
        raise lost

    with pytest.raises(SendError) as unconfirmed:
        attempt("sesv2", send, sleep=lambda _: None)
    assert (unconfirmed.value.outcome, unconfirmed.value.code, unconfirmed.value.attempts) == (
        "unconfirmed", type(lost).__name__, 1)
    assert calls == [1]


def test_a_lookup_whose_answer_is_lost_is_asked_again():
    answers = iter([ReadTimeoutError(endpoint_url="https://sns.us-east-1.amazonaws.com"), {"isOptedOut": True}])

    def lookup():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert attempt("sns", lookup, sleep=lambda _: None, idempotent=True) == ({"isOptedOut": True}, 2)


def test_a_connect_timeout_is_retried():
    calls = []

    def send():
        calls.append(1)
        raise ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

    with pytest.raises(SendError) as refused:
        attempt("sesv2", send, tries=3, sleep=lambda _: None)
    assert (refused.value.outcome, refused.value.attempts, len(calls)) == ("retry", 3, 3)


@pytest.mark.parametrize("service", ["sesv2", "sns"])
def test_the_delivery_function_s_client_makes_one_request_per_send(service, monkeypatch):
    """As the delivery function builds it (ripple.aws), against a provider that hangs up after
    reading each request: one request, not botocore's retry on top of ours."""
    with LossyProvider(service, "hang_up") as provider:
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service.upper()}", provider.url)
        for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test"}.items():
            monkeypatch.setenv(name, value)
        made = getattr(Clients(), service)
        with pytest.raises(SendError) as unconfirmed:
            if service == "sesv2":
                Mailer(made, "n@ripple.test", sleep=lambda _: None).send("a@b.test", None, MAIL, {},
                                                                          delivery="d-1")
            else:
                Texter(made, sleep=lambda _: None).send("+14155550100", "Hi", True)
    assert (unconfirmed.value.outcome, unconfirmed.value.code) == ("unconfirmed", "ConnectionClosedError")
    assert len(provider.sends) == 1
    if service == "sesv2":
        assert provider.email_tags() == {DELIVERY_TAG: "d-1"}


@pytest.mark.parametrize("service", ["sesv2", "sns"])
@pytest.mark.parametrize("mode, code", [("hang", "ReadTimeoutError"), ("hang_up", "ConnectionClosedError")])
def test_a_provider_that_read_the_send_and_did_not_answer_gets_it_once(service, mode, code):
    with LossyProvider(service, mode) as provider:
        with pytest.raises(SendError) as unconfirmed:
            _send(service, provider.client(read_timeout=0.5))
    assert (unconfirmed.value.outcome, unconfirmed.value.code, unconfirmed.value.attempts) == (
        "unconfirmed", code, 1)
    assert len(provider.sends) == 1


@pytest.mark.parametrize("service, code", [("sesv2", "NoMessageId"), ("sns", "ResponseParserError")])
def test_an_answer_that_cannot_be_read_is_unconfirmed(service, code):
    with LossyProvider(service, "garbled") as provider:
        with pytest.raises(SendError) as unconfirmed:
            _send(service, provider.client())
    assert (unconfirmed.value.outcome, unconfirmed.value.code) == ("unconfirmed", code)
    assert len(provider.sends) == 1


@pytest.mark.parametrize("service", ["sesv2", "sns"])
def test_throttling_from_the_same_provider_is_retried(service):
    """The control: a refusal is an answer, and the stand-in counts every send it gets."""
    with LossyProvider(service, "throttle") as provider:
        with pytest.raises(SendError) as refused:
            _send(service, provider.client(), tries=3)
    assert (refused.value.outcome, refused.value.attempts) == ("retry", 3)
    assert len(provider.sends) == 3


@pytest.mark.parametrize("service", ["sesv2", "sns"])
def test_an_accepting_provider_gets_one_send_and_returns_its_message_id(service):
    with LossyProvider(service, "accept") as provider:
        message_id, attempts = _send(service, provider.client())
    assert (attempts, len(provider.sends)) == (1, 1)
    assert message_id == ("ses-1" if service == "sesv2" else "sns-1")


@pytest.mark.parametrize("service", ["sesv2", "sns"])
def test_nothing_listening_is_retried_then_a_retry(service):
    made = boto3.client(service, endpoint_url=nothing_listening(), region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test", config=_SEND_CONFIG)
    with pytest.raises(SendError) as refused:
        _send(service, made, tries=3)
    assert (refused.value.outcome, refused.value.code, refused.value.attempts) == (
        "retry", "EndpointConnectionError", 3)


def _send(service: str, made, tries: int = 4) -> tuple[str, int]:
    if service == "sesv2":
        return Mailer(made, "n@ripple.test", sleep=lambda _: None).send("a@b.test", None, MAIL, {},
                                                                         tries=tries)
    return Texter(made, sleep=lambda _: None).send("+14155550100", "Hi", True, tries=tries)
