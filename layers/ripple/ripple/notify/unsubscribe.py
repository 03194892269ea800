"""One-click unsubscribe: signed tokens naming (user, type, channel), and RFC 8058 headers.

A token is one URL-safe base64 string (no padding) over::

    version (1 byte) | user_id (16) | issued_at, Unix seconds (5) | channel (1) | type (UTF-8)
    | HMAC-SHA256 tag, first 16 bytes

The tag covers a purpose label and the payload, so a secret shared with another use
(say, the JWT secret) never validates anything but an unsubscribe token. A 128-bit tag is
plenty against forgery and keeps links short (about 75 characters for a typical type).

Typical use::

    token = make_token(user_id, "enrollment.created", "email", secret, issued_at=now)
    url = unsubscribe_url("https://api.example.com/notify/unsubscribe", token)
    headers = list_unsubscribe_headers(url)
    ...
    request = read_token(token, secret, max_age_seconds=90 * 86400)  # InvalidToken if bad
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from ripple.notify.exceptions import InvalidToken
from ripple.notify.models import Channel, UnsubscribeRequest

_VERSION = 1
_PURPOSE = b"ripple.notify.unsubscribe\x00"
_TAG_BYTES = 16
_CHANNEL_CODES: dict[str, bytes] = {"email": b"e", "sms": b"s", "in_app": b"i"}
_CHANNELS = {code: channel for channel, code in _CHANNEL_CODES.items()}
_HEADER = 1 + 16 + 5 + 1
_MAX_TYPE_BYTES = 200
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def make_token(user_id: UUID | str, type: str, channel: Channel, secret: str | bytes,
               issued_at: datetime) -> str:
    """A URL-safe token for unsubscribing ``user_id`` from ``type`` on ``channel``.

    ``issued_at`` must be timezone-aware; it is kept to the second for ``max_age_seconds``.
    """
    if issued_at.tzinfo is None or issued_at.utcoffset() is None:
        raise ValueError("issued_at must be timezone-aware")
    if channel not in _CHANNEL_CODES:
        raise ValueError(f"unknown channel {channel!r}")
    kind = type.encode()
    if not kind or len(kind) > _MAX_TYPE_BYTES:
        raise ValueError(f"type must be 1 to {_MAX_TYPE_BYTES} bytes of UTF-8")
    payload = (bytes([_VERSION]) + UUID(str(user_id)).bytes
               + int(issued_at.timestamp()).to_bytes(5, "big") + _CHANNEL_CODES[channel] + kind)
    return _encode(payload + _tag(payload, secret))


def read_token(token: str, secret: str | bytes, max_age_seconds: float | None = None,
               now: datetime | None = None) -> UnsubscribeRequest:
    """The request ``token`` carries, after checking its signature and, if given, its age.

    Raises ``InvalidToken`` when the token is malformed, signed with another secret,
    altered in any byte, or older than ``max_age_seconds`` at ``now`` (default: the
    current time).
    """
    raw = _decode(token)
    if len(raw) < _HEADER + 1 + _TAG_BYTES or raw[0] != _VERSION:
        raise InvalidToken("malformed unsubscribe token")
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(payload, secret)):
        raise InvalidToken("unsubscribe token signature does not match")
    issued = int.from_bytes(payload[17:22], "big")
    if max_age_seconds is not None:
        current = now.timestamp() if now is not None else time.time()
        if current - issued > max_age_seconds:
            raise InvalidToken("unsubscribe token has expired")
    channel = _CHANNELS.get(payload[22:23])
    try:
        kind = payload[_HEADER:].decode()
    except UnicodeDecodeError:
        kind = None
    if channel is None or not kind:
        # Signed by us yet unreadable: only a token from a different version of this layout.
        raise InvalidToken("malformed unsubscribe token")
    return UnsubscribeRequest(user_id=UUID(bytes=bytes(payload[1:17])), type=kind,
                              channel=channel,
                              issued_at=datetime.fromtimestamp(issued, UTC))


def unsubscribe_url(base_url: str, token: str) -> str:
    """``base_url`` with ``token=<token>`` added to its query string.

    >>> unsubscribe_url("https://x.example/unsubscribe?lang=en", "AbC")
    'https://x.example/unsubscribe?lang=en&token=AbC'
    """
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("token", token)])))


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    """The RFC 8058 one-click unsubscribe headers for an email, pointing at ``url``.

    Mailbox providers POST ``List-Unsubscribe=One-Click`` to ``url``, so the endpoint must
    accept a POST without cookies or confirmation. RFC 8058 requires an https URL; http is
    accepted too, for the local stack.

    >>> list_unsubscribe_headers("https://x.example/u?token=AbC")["List-Unsubscribe"]
    '<https://x.example/u?token=AbC>'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("the unsubscribe URL must be an absolute https (or http) URL")
    if any(c in url for c in "<>\r\n\t ,"):
        # These would end the bracketed URI or the header line itself.
        raise ValueError("the unsubscribe URL must not contain <, >, commas or whitespace")
    return {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _tag(payload: bytes, secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("an unsubscribe secret is required")
    return hmac.new(key, _PURPOSE + payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not _BASE64URL.fullmatch(token) or len(token) % 4 == 1:
        raise InvalidToken("malformed unsubscribe token")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    if _encode(raw) != token:
        # Unused low bits set: a second spelling of the same bytes, so not ours.
        raise InvalidToken("malformed unsubscribe token")
    return raw
