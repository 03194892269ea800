"""The wire shape of sharded posting: one round of deliveries split across K posters by a stable hash of the
connection id, posted in parallel, gathered before the caller goes on.

A connection always lands in the same shard (`shard_of`), so its frames keep their order. The
wire shape between the drainer and a poster is plain JSON, the same over a worker process's
pipe and a poster Lambda's invocation payload:

    shard:   {"deliveries": [[connection_id, [frame, ...]], ...]}
    outcome: {"delivered": n, "gone": [id, ...], "failed": n, "retries": n, "posts": n,
              "owed": [[connection_id, [frame, ...]], ...]}

A shard that cannot answer (its worker died, the invocation failed or timed out) raises
`ShardFailed`; the caller treats the whole round as not delivered (the drain does not ack, the
batch is redelivered; a duplicate is possible, a loss is not).
"""
from __future__ import annotations

import zlib
from typing import Any, Protocol

from ripple.gateway import ConnectionsApi, Delivery, Outcome


class ShardFailed(Exception):
    """A shard of the round never answered: nothing can be said of what it posted."""


def shard_of(connection_id: str, shards: int) -> int:
    """The shard that posts to `connection_id`: stable across processes and restarts."""
    return zlib.crc32(connection_id.encode()) % shards


def split(deliveries: list[Delivery], shards: int) -> list[list[Delivery]]:
    """`deliveries` in `shards` lists by `shard_of`, each keeping the round's order."""
    parts: list[list[Delivery]] = [[] for _ in range(shards)]
    for delivery in deliveries:
        parts[shard_of(delivery.connection_id, shards)].append(delivery)
    return parts


def shard_payload(deliveries: list[Delivery]) -> dict[str, Any]:
    return {"deliveries": [[d.connection_id, d.frames] for d in deliveries]}


def deliveries_from(payload: dict[str, Any]) -> list[Delivery]:
    return [Delivery(str(cid), [str(f) for f in frames]) for cid, frames in payload["deliveries"]]


def outcome_payload(outcome: Outcome, posts: int) -> dict[str, Any]:
    return {"delivered": outcome.delivered, "gone": outcome.gone, "failed": outcome.failed,
            "retries": outcome.retries, "posts": posts,
            "owed": [[d.connection_id, d.frames] for d in outcome.owed]}


def outcome_from(payload: dict[str, Any]) -> tuple[Outcome, int]:
    """The Outcome a poster reported and how many posts it made."""
    try:
        return (Outcome(delivered=int(payload["delivered"]), gone=list(payload["gone"]),
                        failed=int(payload["failed"]), retries=int(payload["retries"]),
                        owed=[Delivery(cid, list(frames)) for cid, frames in payload["owed"]]),
                int(payload["posts"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ShardFailed(f"a poster answered {str(payload)[:200]!r}") from exc


def post_shard(api: ConnectionsApi, payload: dict[str, Any]) -> dict[str, Any]:
    """What a poster does with one shard: post it through `api` (without keeping owed frames:
    they go back to the drainer, which keeps them) and report the outcome."""
    before = api.posts
    outcome = api.deliver(deliveries_from(payload))
    return outcome_payload(outcome, api.posts - before)


class Transport(Protocol):
    """Posts shards in parallel: one (Outcome, posts) per shard, in the order given; raises
    ShardFailed if any shard did not answer within `timeout` seconds."""

    def post(self, shards: list[list[Delivery]], timeout: float) -> list[tuple[Outcome, int]]: ...

    def close(self) -> None: ...
