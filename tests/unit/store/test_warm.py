"""Warm buckets: reused only at the version they were read at, while young enough."""
from __future__ import annotations

from ripple.store.warm import Bucket, WarmBuckets


def entry(version: str, read_at: float = 100.0) -> Bucket:
    return Bucket(version, [], None, read_at)


def test_an_entry_is_reused_at_its_version_only() -> None:
    warm = WarmBuckets()
    warm.put("public.t", entry("v3"))
    assert warm.get("public.t", "v3", now=101.0) == entry("v3")
    assert warm.get("public.t", "v4", now=101.0) is None
    assert warm.get("public.other", "v0", now=101.0) is None


def test_an_old_entry_is_read_again_even_at_its_version() -> None:
    warm = WarmBuckets(max_age=60.0)
    warm.put("public.t", entry("v1", read_at=100.0))
    assert warm.get("public.t", "v1", now=160.0) is not None
    assert warm.get("public.t", "v1", now=160.5) is None


def test_the_least_recently_used_bucket_goes_first() -> None:
    warm = WarmBuckets(capacity=2)
    warm.put("a", entry("v1"))
    warm.put("b", entry("v1"))
    assert warm.get("a", "v1", now=100.0) is not None  # a is now the most recently used
    warm.put("c", entry("v1"))
    assert len(warm) == 2
    assert warm.get("b", "v1", now=100.0) is None
    assert warm.get("a", "v1", now=100.0) is not None and warm.get("c", "v1", now=100.0) is not None


def test_the_fanouts_store_keeps_buckets_warm_as_long_as_the_setting_says(monkeypatch):
    from ripple.config import settings
    from ripple.store import DynamoDBStore

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for value, expected in ((None, 60.0), ("900", 900.0)):
        if value is None:
            monkeypatch.delenv("RIPPLE_WARM_MAX_AGE_SECONDS", raising=False)
        else:
            monkeypatch.setenv("RIPPLE_WARM_MAX_AGE_SECONDS", value)
        settings.cache_clear()
        try:
            assert DynamoDBStore.from_settings().warm.max_age == expected
        finally:
            settings.cache_clear()
