"""The time an invocation may still spend on work: Lambda's remaining time, less a margin."""
from __future__ import annotations

from typing import Any


def budget(context: Any, *, margin: float, default: float) -> float:
    """Seconds left for work: the context's remaining time minus `margin` (kept to finish the
    batch in hand, commit and return), never below zero; `default` without a context."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return default
    return max(0.0, context.get_remaining_time_in_millis() / 1000 - margin)
