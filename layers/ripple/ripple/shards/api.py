"""The fanout's `@connections` client: a ConnectionsApi whose wide rounds go out sharded.

A round of at least `threshold` posts, with `shards` (K) above one, is split by connection
(`wire.split`: a connection's frames all land in one shard, in order) and handed to the
transport, which posts the shards in parallel and returns when every one has answered; their
outcomes are merged into the round's. Smaller rounds, and K = 1, post from this process. Owed
frames are kept here either way (`ConnectionsApi.deliver`): a connection that owes frames is
held back before the split, and frames a shard reports owed are kept for the drainer to store.

    api = connections_api_from_settings()   # RIPPLE_POSTER_SHARDS=2 → worker processes
    api.keep_owed = True
    outcome = api.deliver(deliveries)        # ShardFailed: nothing can be said of this round
"""
from __future__ import annotations

from dataclasses import dataclass

from ripple.config import settings
from ripple.gateway import ConnectionsApi, Delivery, Outcome
from ripple.shards.wire import Transport, split


@dataclass
class ShardedApi(ConnectionsApi):
    """A ConnectionsApi posting rounds of `threshold` posts or more across `shards` posters
    through `transport` (each shard given `timeout` seconds); `sharded_rounds` counts them."""

    transport: Transport | None = None
    shards: int = 1
    threshold: int = 200
    timeout: float = 60.0
    sharded_rounds: int = 0

    def _post_round(self, deliveries: list[Delivery], outcome: Outcome) -> None:
        if self.transport is None or self.shards < 2 or sum(len(d.frames) for d in deliveries) < self.threshold:
            super()._post_round(deliveries, outcome)
            return
        # Empty shards cost nothing: only the posters with work are asked.
        parts = [part for part in split(deliveries, self.shards) if part]
        answers = self.transport.post(parts, self.timeout)
        self.sharded_rounds += 1
        for answer, posts in answers:
            self.posts += posts
            outcome.delivered += answer.delivered
            outcome.failed += answer.failed
            outcome.retries += answer.retries
            outcome.gone.extend(answer.gone)
            outcome.owed.extend(answer.owed)


def transport_from_settings(shards: int) -> Transport:
    """RIPPLE_SHARD_TRANSPORT's transport for `shards` posters: worker processes, or parallel
    invocations of RIPPLE_POSTER_FUNCTION."""
    config = settings()
    if config.shard_transport == "lambda":
        if not config.poster_function:
            raise RuntimeError("RIPPLE_SHARD_TRANSPORT=lambda needs RIPPLE_POSTER_FUNCTION")
        from ripple.shards.invoke import LambdaTransport

        return LambdaTransport(config.poster_function)
    from ripple.shards.process import ProcessTransport

    # Started with the fanout's client: the container's first wake pays for the interpreters,
    # not the first round wide enough to need them.
    return ProcessTransport(shards).warm()


def connections_api_from_settings() -> ConnectionsApi:
    """The fanout's client: a ShardedApi over RIPPLE_POSTER_SHARDS posters when that is above
    one, else a plain ConnectionsApi (every round posted from this process)."""
    config = settings()
    api = ConnectionsApi.from_settings()
    if config.poster_shards < 2:
        return api
    return ShardedApi(api.client, concurrency=api.concurrency, inline_max=api.inline_max, transport=transport_from_settings(config.poster_shards),
                      shards=config.poster_shards, threshold=config.shard_threshold,
                      timeout=config.shard_timeout_seconds)
