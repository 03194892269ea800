"""What to do when SESv2 ``SendEmail`` or SNS ``Publish`` fails, and how long to wait.

``classify`` takes the error code boto3 reports (``ClientError.response["Error"]["Code"]``)
and answers:

- ``retry``: the request was fine, the service was busy or failing; try again after
  ``backoff(attempt)`` within the invocation, then after ``resend_after(attempts)`` in a
  later one;
- ``permanent``: this message cannot be sent as it is; record the delivery as failed;
- ``suppress``: the address asked not to receive messages; record it and stop sending to it.

``unanswered`` takes a failure that came without a response (boto3's transport errors) and
answers ``retry`` only when the request is known not to have left — no connection was made —
and ``unconfirmed`` otherwise: a read timeout or a connection closed after the request was
written may hide a message the provider accepted, and sending it again could deliver it twice.

The code is the wire code: SESv2 is a REST-JSON API whose codes are the exception names
(``TooManyRequestsException``); SNS is a Query API whose codes drop the suffix
(``ThrottledException`` travels as ``Throttled``). Both spellings are accepted. Sources: the
SESv2 API reference for SendEmail
(https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html), the SNS API
reference for Publish (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html) and the
error shapes in botocore's service models (``sesv2/2019-09-27``, ``sns/2010-03-31``).

Codes not listed fall back on the HTTP status when the caller has it: 429 and 5xx retry,
anything else is permanent, since resending a request the service refused will not change
the answer.
"""
from __future__ import annotations

import random as _random
from collections.abc import Callable, Mapping
from typing import Literal, TypeAlias

from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ProxyConnectionError

Service: TypeAlias = Literal["sesv2", "sns"]
Outcome: TypeAlias = Literal["retry", "permanent", "suppress", "unconfirmed"]

# Raised while connecting (refused, DNS, connect timeout, the proxy unreachable), before a byte
# of the request is written. Every other transport error may come after the provider read it.
_BEFORE_SENDING = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)

# Errors any AWS API may return (AWS "Common Errors"): throttling and server-side failures.
_COMMON: Mapping[str, Outcome] = {
    "Throttling": "retry",
    "ThrottlingException": "retry",
    "RequestLimitExceeded": "retry",
    "ServiceUnavailable": "retry",
    "ServiceUnavailableException": "retry",
    "InternalFailure": "retry",
    "InternalServerError": "retry",
    "RequestTimeout": "retry",
    "RequestTimeoutException": "retry",
    # Credentials or permissions: a deployment problem that waiting will not fix.
    "AccessDenied": "permanent",
    "AccessDeniedException": "permanent",
    "UnrecognizedClientException": "permanent",
    "InvalidClientTokenId": "permanent",
    "ValidationError": "permanent",
    "ValidationException": "permanent",
}

_SESV2: Mapping[str, Outcome] = {
    # 429 "Too many requests have been made to the operation": the per-second send rate.
    "TooManyRequestsException": "retry",
    # Sending quota reached (SES also reports it as ThrottlingException "Daily message quota
    # exceeded"); the quota refills over the rolling 24 hours, so a later try can pass.
    "LimitExceededException": "retry",
    # "The message can't be sent because it contains invalid content" (also: an unverified
    # recipient while the account is in the sandbox).
    "MessageRejected": "permanent",
    # "The sending domain isn't verified."
    "MailFromDomainNotVerifiedException": "permanent",
    # "The account's ability to send email has been permanently restricted."
    "AccountSuspendedException": "permanent",
    # "The account's ability to send email is currently paused": lifted by a person, not by
    # waiting, so backing off for seconds only delays the same answer.
    "SendingPausedException": "permanent",
    # "The input you provided is invalid."
    "BadRequestException": "permanent",
    # A configuration set, template or identity named in the request does not exist.
    "NotFoundException": "permanent",
}
# SESv2 reports no suppression synchronously: a send to an address on the account-level
# suppression list succeeds and comes back as a bounce event, handled where events are.

_SNS: Mapping[str, Outcome] = {
    # ThrottledException (429): the account's SMS or Publish rate.
    "Throttled": "retry",
    "ThrottledException": "retry",
    "KMSThrottling": "retry",
    "KMSThrottlingException": "retry",
    # InternalErrorException (500).
    "InternalError": "retry",
    "InternalErrorException": "retry",
    # "A request parameter does not comply with the associated constraints": for SMS, most
    # often a phone number SNS cannot deliver to.
    "InvalidParameter": "permanent",
    "InvalidParameterException": "permanent",
    "ParameterValueInvalid": "permanent",
    "InvalidParameterValueException": "permanent",
    "NotFound": "permanent",
    "NotFoundException": "permanent",
    "AuthorizationError": "permanent",
    "AuthorizationErrorException": "permanent",
    "InvalidSecurity": "permanent",
    "InvalidSecurityException": "permanent",
    "PlatformApplicationDisabled": "permanent",
    "PlatformApplicationDisabledException": "permanent",
    "KMSAccessDenied": "permanent",
    "KMSAccessDeniedException": "permanent",
    "KMSDisabled": "permanent",
    "KMSDisabledException": "permanent",
    "KMSInvalidState": "permanent",
    "KMSInvalidStateException": "permanent",
    "KMSNotFound": "permanent",
    "KMSNotFoundException": "permanent",
    "KMSOptInRequired": "permanent",
    # The phone number replied STOP (OptedOutException); sending again would break the law
    # in many countries, so the number joins the suppression list.
    "OptedOut": "suppress",
    "OptedOutException": "suppress",
    # A push endpoint the platform disabled (uninstalled app): stop addressing it.
    "EndpointDisabled": "suppress",
    "EndpointDisabledException": "suppress",
}

_BY_SERVICE: Mapping[str, Mapping[str, Outcome]] = {"sesv2": _SESV2, "sns": _SNS}


def classify(service: Service, error_code: str, status_code: int | None = None) -> Outcome:
    """What to do about ``error_code`` from ``service``; ``status_code`` decides unknown codes.

    >>> classify("sesv2", "TooManyRequestsException"), classify("sns", "OptedOut")
    ('retry', 'suppress')
    >>> classify("sns", "SomethingNew", status_code=503)
    'retry'
    """
    known = _BY_SERVICE.get(service)
    if known is None:
        raise ValueError(f"unknown service {service!r}; expected 'sesv2' or 'sns'")
    outcome = known.get(error_code) or _COMMON.get(error_code)
    if outcome is not None:
        return outcome
    if status_code is not None and (status_code == 429 or status_code >= 500):
        return "retry"
    return "permanent"


def unanswered(error: BaseException) -> Outcome:
    """What to do about a call that failed without a response: ``retry`` when it never left,
    ``unconfirmed`` when the provider may have received it.

    >>> from botocore.exceptions import ReadTimeoutError
    >>> unanswered(EndpointConnectionError(endpoint_url="https://email.eu-west-1.amazonaws.com"))
    'retry'
    >>> unanswered(ReadTimeoutError(endpoint_url="https://email.eu-west-1.amazonaws.com"))
    'unconfirmed'
    """
    return "retry" if isinstance(error, _BEFORE_SENDING) else "unconfirmed"


def backoff(attempt: int, base: float = 0.5, cap: float = 20.0,
            random: Callable[[], float] = _random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    Exponential with full jitter: uniform in ``[0, min(cap, base * 2 ** (attempt - 1)))``, so
    clients throttled together spread out instead of retrying in step.

    >>> backoff(3, random=lambda: 0.5)
    1.0
    """
    if attempt < 1:
        raise ValueError("attempt counts retries from 1")
    # Past 2**64 every ceiling is the cap; clamping keeps the float arithmetic finite.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return ceiling * random()


def resend_after(attempts: int, base: float = 1.0, cap: float = 3600.0) -> float:
    """Seconds before another invocation sends a delivery again, after ``attempts`` sends
    in all were throttled or found the service unavailable.

    Doubles with every attempt, up to ``cap`` (an hour): a throttled burst is resent within
    a minute or two, an outage is polled hourly until the attempts run out.

    >>> resend_after(4), resend_after(8), resend_after(40)
    (8.0, 128.0, 3600.0)
    """
    if attempts < 1:
        raise ValueError("attempts counts sends from 1")
    return min(cap, base * 2.0 ** min(attempts - 1, 64))
