"""The fanout's counters as the dict its handler returns and logs."""
from __future__ import annotations

from dataclasses import asdict

from ripple.outbox.drain import Stats


def test_as_dict_is_asdict_with_its_own_lists() -> None:
    stats = Stats(batches=2, changes=7, deliveries=70, authorize_seconds=0.25)
    stats.sizes.extend([5, 2])
    stats.lags.extend([0.01, 0.02])
    counters = stats.as_dict()
    assert counters == asdict(stats)
    assert list(counters) == list(asdict(stats))
    counters["sizes"].append(9)
    assert stats.sizes == [5, 2]
