"""The fanout's and notify's time budget comes from the invocation's remaining time."""
from __future__ import annotations

from ripple.budget import budget


class Context:
    def __init__(self, remaining_ms: int):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_remaining_time_less_the_margin():
    assert budget(Context(60_000), margin=10, default=50) == 50.0
    assert budget(Context(25_500), margin=10, default=50) == 15.5


def test_never_below_zero():
    assert budget(Context(3_000), margin=10, default=50) == 0.0


def test_the_default_without_a_context():
    assert budget(None, margin=10, default=50) == 50
