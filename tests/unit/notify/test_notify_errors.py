"""Provider errors: SESv2 SendEmail and SNS Publish codes, unknown codes, and the backoff."""
from __future__ import annotations

import random

import pytest

from ripple.notify.errors import backoff, classify, resend_after


@pytest.mark.parametrize("code, outcome", [
    ("TooManyRequestsException", "retry"),
    ("LimitExceededException", "retry"),
    ("Throttling", "retry"),
    ("ThrottlingException", "retry"),
    ("ServiceUnavailable", "retry"),
    ("InternalFailure", "retry"),
    ("MessageRejected", "permanent"),
    ("MailFromDomainNotVerifiedException", "permanent"),
    ("AccountSuspendedException", "permanent"),
    ("SendingPausedException", "permanent"),
    ("BadRequestException", "permanent"),
    ("NotFoundException", "permanent"),
    ("AccessDeniedException", "permanent"),
])
def test_sesv2(code, outcome):
    assert classify("sesv2", code) == outcome


@pytest.mark.parametrize("code, outcome", [
    ("Throttling", "retry"),
    ("Throttled", "retry"),             # ThrottledException as boto3 reports it
    ("ThrottledException", "retry"),
    ("KMSThrottling", "retry"),
    ("InternalError", "retry"),
    ("InvalidParameter", "permanent"),  # e.g. "Invalid parameter: PhoneNumber"
    ("InvalidParameterException", "permanent"),
    ("ParameterValueInvalid", "permanent"),
    ("AuthorizationError", "permanent"),
    ("KMSDisabled", "permanent"),
    ("ValidationException", "permanent"),
    ("OptedOut", "suppress"),
    ("OptedOutException", "suppress"),
    ("EndpointDisabled", "suppress"),
])
def test_sns(code, outcome):
    assert classify("sns", code) == outcome


def test_service_specific_codes_do_not_leak_across_services():
    assert classify("sesv2", "OptedOut") == "permanent"
    assert classify("sns", "TooManyRequestsException") == "permanent"


@pytest.mark.parametrize("status, outcome", [
    (None, "permanent"), (400, "permanent"), (403, "permanent"), (404, "permanent"),
    (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
])
def test_unknown_codes_follow_the_http_status(status, outcome):
    assert classify("sesv2", "SomethingNewException", status) == outcome
    assert classify("sns", "SomethingNew", status) == outcome


def test_known_codes_win_over_the_status():
    assert classify("sns", "Throttled", 400) == "retry"
    assert classify("sesv2", "MessageRejected", 500) == "permanent"


def test_unknown_service_is_an_error():
    with pytest.raises(ValueError):
        classify("ses", "Throttling")  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt, ceiling", [
    (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 20.0), (50, 20.0), (5000, 20.0),
])
def test_backoff_ceiling_doubles_then_caps(attempt, ceiling):
    assert backoff(attempt, random=lambda: 1.0) == ceiling
    assert backoff(attempt, random=lambda: 0.0) == 0.0


def test_backoff_is_fully_jittered_within_the_ceiling():
    rng = random.Random(7)
    waits = [backoff(5, random=rng.random) for _ in range(2000)]
    assert all(0.0 <= w < 8.0 for w in waits)
    assert min(waits) < 0.5 and max(waits) > 7.5  # spread over the whole range


def test_backoff_parameters():
    assert backoff(3, base=1.0, cap=60.0, random=lambda: 0.5) == 2.0
    assert 0.0 <= backoff(10) <= 20.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_counts_from_one(attempt):
    with pytest.raises(ValueError):
        backoff(attempt)


def test_a_deferred_resend_waits_longer_with_every_attempt_up_to_an_hour():
    waits = [resend_after(n) for n in range(1, 41)]
    assert waits == sorted(waits) and waits[3] < 60 < waits[7] < waits[11]
    assert waits[-1] == 3600.0 and max(waits) == 3600.0
    assert resend_after(10**6) == 3600.0
    with pytest.raises(ValueError):
        resend_after(0)
