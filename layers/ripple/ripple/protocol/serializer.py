"""Text serializers for `vsn=1.0.0` (JSON objects) and `vsn=2.0.0` (JSON arrays).

`decode` turns a client's text frame into a Message or raises FrameError; `encode` is its inverse.
Binary frames never reach these functions: API Gateway closes the socket with 1003 first.
"""
from __future__ import annotations

from typing import Any

from ripple import codec
from ripple.protocol.message import Message

V1 = "1.0.0"
V2 = "2.0.0"
VERSIONS = (V1, V2)
# Deeper JSON is refused before anything reads it: no payload a client library sends nests so far.
MAX_DEPTH = 64


class FrameError(ValueError):
    """A frame that is not a Phoenix message; str() says why."""


def _ref(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FrameError(f"{name} must be a string or null")


def decode(text: str, vsn: str = V1) -> Message:
    """Decode one client text frame sent with serializer `vsn`."""
    try:
        raw = codec.loads(text)
    except ValueError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise FrameError(f"nested deeper than {MAX_DEPTH} levels") from None
    _check(raw)
    if vsn == V2:
        if not isinstance(raw, list) or len(raw) != 5:
            raise FrameError("expected [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = raw
    else:
        if not isinstance(raw, dict):
            raise FrameError("expected a JSON object with topic, event, payload, ref")
        join_ref, ref = raw.get("join_ref"), raw.get("ref")
        topic, event, payload = raw.get("topic"), raw.get("event"), raw.get("payload", {})
    if not isinstance(topic, str) or not topic:
        raise FrameError("topic must be a non-empty string")
    if not isinstance(event, str) or not event:
        raise FrameError("event must be a non-empty string")
    return Message(topic=topic, event=event, payload=payload if payload is not None else {},
                   ref=_ref(ref, "ref"), join_ref=_ref(join_ref, "join_ref"))


def _check(value: Any) -> None:
    """Refuse what cannot be echoed or stored: JSON nested deeper than MAX_DEPTH, and strings
    holding a lone UTF-16 surrogate (valid JSON escapes, but not encodable as UTF-8)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _utf8(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise FrameError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _utf8(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError("a string holds a lone UTF-16 surrogate (text cut inside a character)") from None


def encode(message: Message, vsn: str = V1) -> str:
    """Encode a server message for a client using serializer `vsn`."""
    if vsn == V2:
        return codec.dumps([message.join_ref, message.ref, message.topic, message.event, message.payload])
    # Phoenix's V1 JSON serializer carries no join_ref on the way out.
    return codec.dumps({"topic": message.topic, "event": message.event, "payload": message.payload,
                        "ref": message.ref})


def negotiate(vsn: str | None) -> str:
    """The serializer for a `vsn` query parameter; absent means 1.0.0, unknown raises FrameError."""
    if not vsn:
        return V1
    if vsn not in VERSIONS:
        raise FrameError(f"unsupported serializer version {vsn!r}")
    return vsn
