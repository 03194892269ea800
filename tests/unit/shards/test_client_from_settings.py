"""Which `@connections` client the fanout gets from its settings: K = 1 posts from the fanout
itself, K > 1 shards wide rounds over worker processes, started with the client."""
from __future__ import annotations

import pytest

from ripple.config import settings
from ripple.gateway import ConnectionsApi
from ripple.shards.api import ShardedApi, connections_api_from_settings
from ripple.shards.process import ProcessTransport


@pytest.fixture
def environment(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "unit"), ("AWS_SECRET_ACCESS_KEY", "unit"),
                        ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("RIPPLE_CONNECTIONS_ENDPOINT", "http://127.0.0.1:9")):
        monkeypatch.setenv(name, value)
    # The local stack, when a test started it in this process, names its poster function.
    for name in ("RIPPLE_POSTER_FUNCTION", "RIPPLE_POSTER_SHARDS", "RIPPLE_SHARD_TRANSPORT",
                 "RIPPLE_SHARD_THRESHOLD", "RIPPLE_SHARD_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings.cache_clear()
    yield monkeypatch
    settings.cache_clear()


def test_one_poster_is_the_plain_client(environment) -> None:
    api = connections_api_from_settings()
    assert type(api) is ConnectionsApi


def test_several_posters_shard_over_worker_processes_started_with_the_client(environment) -> None:
    environment.setenv("RIPPLE_POSTER_SHARDS", "3")
    environment.setenv("RIPPLE_SHARD_THRESHOLD", "50")
    environment.setenv("RIPPLE_SHARD_TIMEOUT_SECONDS", "7.5")
    api = connections_api_from_settings()
    assert isinstance(api, ShardedApi)
    assert (api.shards, api.threshold, api.timeout) == (3, 50, 7.5)
    assert isinstance(api.transport, ProcessTransport) and api.transport.shards == 3
    try:
        assert api.transport.started == 3 and len(api.transport.pids) == 3
    finally:
        api.transport.close()
    assert api.transport.pids == []


def test_the_lambda_transport_needs_its_function(environment) -> None:
    environment.setenv("RIPPLE_POSTER_SHARDS", "4")
    environment.setenv("RIPPLE_SHARD_TRANSPORT", "lambda")
    with pytest.raises(RuntimeError, match="RIPPLE_POSTER_FUNCTION"):
        connections_api_from_settings()
