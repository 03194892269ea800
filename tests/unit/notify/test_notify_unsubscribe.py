"""Unsubscribe tokens: round trip, tampering, wrong secret, expiry; RFC 8058 headers."""
from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ripple.notify.exceptions import InvalidToken
from ripple.notify.models import UnsubscribeRequest
from ripple.notify.unsubscribe import (
    list_unsubscribe_headers,
    make_token,
    read_token,
    unsubscribe_url,
)

SECRET = "unsubscribe-secret-with-at-least-32-characters"
USER = uuid.UUID("5f0c6a3e-8a8b-4c1e-9d56-2b1f0d9a7c11")
ISSUED = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


def token(type="enrollment.created", channel="email", secret=SECRET, issued_at=ISSUED):
    return make_token(USER, type, channel, secret, issued_at)


@pytest.mark.parametrize("type, channel", [
    ("enrollment.created", "email"),
    ("*", "sms"),
    ("invoice.paid", "in_app"),
    ("résumé.partagé", "email"),
    ("x" * 200, "email"),
])
def test_round_trip(type, channel):
    request = read_token(token(type, channel), SECRET)
    assert request == UnsubscribeRequest(user_id=USER, type=type, channel=channel,
                                         issued_at=ISSUED)


def test_tokens_are_compact_and_url_safe():
    value = token()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value)
    assert len(value) <= 80
    assert token() == value  # deterministic: the same request gives the same link


def test_user_id_may_be_a_string_and_issued_at_any_zone():
    eastern = ISSUED.astimezone(timezone(timedelta(hours=-5)))
    assert make_token(str(USER), "t", "email", SECRET, eastern) == token("t")


def test_bytes_and_str_secrets_agree():
    assert token(secret=SECRET.encode()) == token()


def flip(value: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("index", [0, 1, 16, 17, 21, 22, 23, 30, -16, -1])
def test_any_altered_byte_is_refused(index):
    with pytest.raises(InvalidToken):
        read_token(flip(token(), index), SECRET)


@pytest.mark.parametrize("value", [
    "", "not a token", "abc", "A" * 10, "====", token() + "=", token()[:-1], token()[:-2],
    token() + "A", token()[:-1] + "+", "/" + token()[1:], token() + "\n", "é" * 60,
])
def test_malformed_tokens_are_refused(value):
    with pytest.raises(InvalidToken):
        read_token(value, SECRET)


def test_non_string_token_is_refused():
    with pytest.raises(InvalidToken):
        read_token(None, SECRET)  # type: ignore[arg-type]


def test_a_token_from_another_secret_is_refused():
    with pytest.raises(InvalidToken, match="signature"):
        read_token(token(secret="some-other-secret"), SECRET)


def test_forged_payload_with_a_valid_tag_from_elsewhere_is_refused():
    # Swapping in another user's id keeps the length; the tag no longer matches.
    raw = bytearray(base64.urlsafe_b64decode(token() + "=" * (-len(token()) % 4)))
    raw[1:17] = uuid.uuid4().bytes
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        read_token(forged, SECRET)


@pytest.mark.parametrize("age, max_age, valid", [
    (timedelta(0), 60, True),
    (timedelta(seconds=60), 60, True),
    (timedelta(seconds=61), 60, False),
    (timedelta(days=89), 90 * 86400, True),
    (timedelta(days=91), 90 * 86400, False),
    (timedelta(days=3650), None, True),
    (timedelta(seconds=-30), 60, True),  # a clock a little behind the issuer's
])
def test_expiry(age, max_age, valid):
    now = ISSUED + age
    if valid:
        assert read_token(token(), SECRET, max_age_seconds=max_age, now=now).user_id == USER
    else:
        with pytest.raises(InvalidToken, match="expired"):
            read_token(token(), SECRET, max_age_seconds=max_age, now=now)


def test_expiry_defaults_to_the_current_time():
    fresh = token(issued_at=datetime.now(UTC))
    assert read_token(fresh, SECRET, max_age_seconds=60).type == "enrollment.created"
    with pytest.raises(InvalidToken, match="expired"):
        read_token(token(), SECRET, max_age_seconds=60)  # issued in January 2026


def test_issued_at_keeps_whole_seconds():
    request = read_token(token(issued_at=ISSUED + timedelta(microseconds=999_999)), SECRET)
    assert request.issued_at == ISSUED


@pytest.mark.parametrize("kwargs, message", [
    ({"issued_at": datetime(2026, 1, 15, 12, 0)}, "timezone-aware"),
    ({"channel": "push"}, "channel"),
    ({"type": ""}, "type"),
    ({"type": "x" * 201}, "type"),
    ({"secret": ""}, "secret"),
])
def test_make_token_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        token(**kwargs)


def test_read_token_needs_a_secret():
    with pytest.raises(ValueError, match="secret"):
        read_token(token(), "")


# --- URLs and headers -----------------------------------------------------------------------

@pytest.mark.parametrize("base, expected", [
    ("https://api.example/unsubscribe", "https://api.example/unsubscribe?token=T-_1"),
    ("https://api.example/u?lang=pt-BR", "https://api.example/u?lang=pt-BR&token=T-_1"),
    ("https://api.example/u?token=old&a=", "https://api.example/u?a=&token=T-_1"),
    ("http://127.0.0.1:54321/notify/unsubscribe",
     "http://127.0.0.1:54321/notify/unsubscribe?token=T-_1"),
])
def test_unsubscribe_url(base, expected):
    assert unsubscribe_url(base, "T-_1") == expected


def test_list_unsubscribe_headers_follow_rfc_8058():
    url = unsubscribe_url("https://api.example/unsubscribe", token())
    assert list_unsubscribe_headers(url) == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize("url", [
    "mailto:unsubscribe@example.com",
    "/relative/path",
    "ftp://example.com/u",
    "https://example.com/u?x=<y>",
    "https://example.com/u\r\nBcc: eve@example.com",
    "https://example.com/a b",
    "https://example.com/u?a=1,2",
])
def test_list_unsubscribe_headers_refuse_urls_that_cannot_be_one_click(url):
    with pytest.raises(ValueError):
        list_unsubscribe_headers(url)
