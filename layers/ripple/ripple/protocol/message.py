"""A Phoenix message and the replies the server builds from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PHOENIX_TOPIC = "phoenix"


@dataclass(frozen=True)
class Message:
    """One frame: `topic` + `event` + `payload`, with the client's `ref`/`join_ref` echoed on replies."""

    topic: str
    event: str
    payload: Any = field(default_factory=dict)
    ref: str | None = None
    join_ref: str | None = None


def reply(to: Message, status: str, response: Any) -> Message:
    """The `phx_reply` answering `to`."""
    return Message(
        topic=to.topic,
        event="phx_reply",
        payload={"status": status, "response": response},
        ref=to.ref,
        join_ref=to.join_ref,
    )


def ok(to: Message, response: Any | None = None) -> Message:
    """A successful reply, `{"status": "ok", "response": {...}}`."""
    return reply(to, "ok", {} if response is None else response)


def error(to: Message, reason: str) -> Message:
    """An error reply, `{"status": "error", "response": {"reason": reason}}`."""
    return reply(to, "error", {"reason": reason})


def system(topic: str, extension: str, status: str, text: str, join_ref: str | None = None) -> Message:
    """A `system` push, e.g. "Subscribed to PostgreSQL" once postgres_changes is live."""
    return Message(
        topic=topic,
        event="system",
        payload={"channel": topic.removeprefix("realtime:"), "extension": extension,
                 "message": text, "status": status},
        join_ref=join_ref,
    )


def broadcast(topic: str, event: str, payload: Any, meta: dict[str, Any] | None = None) -> Message:
    """The `broadcast` push every client library understands; `meta` ({"id"}, and
    {"replayed": True} on a replay) as Supabase sends it for messages sent from the database."""
    body = {"type": "broadcast", "event": event, "payload": payload}
    if meta is not None:
        body["meta"] = meta
    return Message(topic=topic, event="broadcast", payload=body)


def presence_diff(topic: str, payload: dict[str, Any]) -> Message:
    return Message(topic=topic, event="presence_diff", payload=payload)
