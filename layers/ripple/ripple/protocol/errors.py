"""The one error type at the WebSocket boundary, rendered the way Supabase Realtime words it.

    raise ChannelError("ChannelRateLimitReached", "Too many channels")
    # -> {"status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}}
"""
from __future__ import annotations

from typing import Any

from ripple.protocol.message import Message, reply


class ChannelError(Exception):
    """A frame refused with an error reply; `code` is Supabase's (None for its bare messages)."""

    def __init__(self, code: str | None, message: str, response: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self._response = response

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message

    def reply(self, to: Message) -> Message:
        """The `phx_reply` with status `error` that answers `to`."""
        return reply(to, "error", self._response if self._response is not None else {"reason": self.reason})


def unauthorized_read(channel: str) -> ChannelError:
    return ChannelError("Unauthorized", f"You do not have permissions to read from this Channel topic: {channel}")


def unauthorized_write(channel: str) -> ChannelError:
    return ChannelError("Unauthorized", f"You do not have permissions to write to this Channel topic: {channel}")


def payload_too_large() -> ChannelError:
    # Supabase answers an oversize client message with this bare response, not a reason.
    return ChannelError(None, "payload_size_exceeded", {"error": "payload_size_exceeded"})


def unmatched_topic() -> ChannelError:
    return ChannelError(None, "unmatched topic")
