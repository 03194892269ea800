"""The poster function: post one shard of the fanout's deliveries and answer its outcome
(`ripple.shards.invoke` sends the shard and reads the answer).

    on_shard({"deliveries": [["JC1dgf9yoAMCK-g=", ["<frame>", "<frame>"]]]})
    -> {"delivered": 2, "gone": [], "failed": 0, "retries": 0, "posts": 2, "owed": []}

Frames that cannot get through now come back under `owed`, in order: the drainer keeps them
(this function keeps nothing). An event that is not a shard is answered
`{"error": {"type": "InvalidShard", "message": "<where and what>"}}`, never with its contents.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictStr, StringConstraints, ValidationError

from ripple.gateway import ConnectionsApi
from ripple.log import logger
from ripple.metrics import record_shard
from ripple.shards.wire import post_shard

ConnectionId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]
# How many of a bad event's problems the answer lists.
PROBLEMS = 3


class ShardEvent(BaseModel):
    """A shard as the transport sends it: per connection, its frames in order."""

    model_config = ConfigDict(extra="forbid")

    deliveries: list[tuple[ConnectionId, list[StrictStr]]]


@lru_cache(maxsize=1)
def _container_api() -> ConnectionsApi:
    """The container's @connections client (its keep-alive pool and signing key)."""
    return ConnectionsApi.from_settings()


def on_shard(event: Any) -> dict[str, Any]:
    """Post the shard in `event` (owed frames are answered, not kept); the outcome, or an
    InvalidShard error for an event that is not a shard."""
    try:
        shard = ShardEvent.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}"
                             for e in exc.errors(include_input=False)[:PROBLEMS])
        logger.warning("poster refused its event", extra={"problems": problems})
        return {"error": {"type": "InvalidShard", "message": problems}}
    shared = _container_api()
    # Its own counter per invocation: `posts` is this shard's even when posters share a process.
    api = ConnectionsApi(shared.client, concurrency=shared.concurrency, inline_max=shared.inline_max)
    answer = post_shard(api, {"deliveries": [list(pair) for pair in shard.deliveries]})
    record_shard(answer)
    logger.info("poster", extra={k: v if isinstance(v, int) else len(v) for k, v in answer.items()})
    return answer
