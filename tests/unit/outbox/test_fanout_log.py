"""What a fanout wake writes to its log: an INFO line only when there is something to act on;
the counters go back as the function's result (and as EMF) either way."""
from __future__ import annotations

import io
import json

import pytest

from ripple.outbox import drain

ROUTINE = {"batches": 1, "changes": 1, "deliveries": 10, "posts": 10}


class Drained:
    """A fanout whose drain did what `stats` says."""

    def __init__(self, stats: drain.Stats):
        self.stats = stats

    def run(self, wake, budget_seconds):
        return self.stats


@pytest.fixture
def log(monkeypatch) -> io.StringIO:
    """What the Powertools logger writes (its handler holds the stream it was created with)."""
    stream = io.StringIO()
    monkeypatch.setattr(drain.logger.registered_handler, "stream", stream)
    return stream


def fanout_lines(log: io.StringIO) -> list[dict]:
    text, _ = log.getvalue(), log.truncate(0)
    log.seek(0)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "fanout"]


@pytest.mark.parametrize("notable", ["gone", "failed", "retries", "owed", "closed", "shard_failures",
                                     "policy_errors", "expired_partitions"])
def test_a_wake_with_something_to_act_on_logs_every_counter_at_info(monkeypatch, log, notable) -> None:
    counters = {**ROUTINE, notable: 2}
    monkeypatch.setattr(drain, "fanout", lambda: Drained(drain.Stats(**counters)))
    assert drain.on_wake(drain.WakeEvent())[notable] == 2
    [line] = fanout_lines(log)
    assert line["level"] == "INFO"
    assert {k: line[k] for k in counters} == counters


def test_a_routine_wake_logs_at_debug_only(monkeypatch, log) -> None:
    monkeypatch.setattr(drain, "fanout", lambda: Drained(drain.Stats(**ROUTINE)))
    assert drain.on_wake(drain.WakeEvent())["deliveries"] == 10
    assert fanout_lines(log) == []
    level = drain.logger.log_level
    drain.logger.setLevel("DEBUG")
    try:
        drain.on_wake(drain.WakeEvent())
    finally:
        drain.logger.setLevel(level)
    [line] = fanout_lines(log)
    assert line["level"] == "DEBUG" and line["deliveries"] == 10
