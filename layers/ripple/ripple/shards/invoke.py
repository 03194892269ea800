"""Sharded posting through the poster function: one synchronous Lambda invocation
(RequestResponse) per shard, all in flight at once, each answered by `ripple.shards.poster`
with its shard's outcome.

    transport = LambdaTransport("ripple-poster")       # a function name or ARN
    results = transport.post(split(deliveries, 4), timeout=30.0)   # [(Outcome, posts), ...]

Threads, not the posters' event loop: each invocation is one blocking boto3 call that waits for a
whole poster run, so a thread per invocation costs nothing beside it, and boto3 clients are
thread-safe.

A shard over one invocation's payload quota is sent as several invocations, cut between
connections, so each connection's frames still go through one poster in order; one connection
owed more than the quota is posted in consecutive pieces, one invocation after the other.

botocore retries a throttled or failed invocation (`ripple.aws`); a retried poster may post
again what it had already posted, which at-least-once delivery allows. Anything else — the
poster raised (FunctionError) or refused its event, throttling outlasted the retries, the
function does not exist, no answer within `timeout`, an answer that is not an outcome — raises
ShardFailed naming the shard and the reason, once every invocation has answered or the time is
up: a round that failed is not still being posted when the caller redelivers it, except by a
poster running past `timeout`, which its own function timeout ends (template.yaml keeps that
below the shard timeout).
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ripple.aws import INVOKES_IN_FLIGHT, clients
from ripple.codec import dumps, loads
from ripple.gateway import Delivery, Outcome
from ripple.log import logger
from ripple.shards.wire import ShardFailed, outcome_from, shard_payload

# A synchronous invocation's request and response may each be 6 MB; what is owed comes back in
# the answer, so a request stays well below that.
MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
# How much of a poster's error message a ShardFailed (and its log line) repeats.
REASON_CHARS = 200

Lane = list[list[Delivery]]
# A lane as it is sent: each payload's deliveries and their encoded shard.
Encoded = list[tuple[list[Delivery], bytes]]
# The bytes of `{"deliveries":[]}` around a payload's deliveries.
_WRAPPER = len(dumps(shard_payload([])).encode())


@dataclass
class _Part:
    """What one lane of a shard did: its outcome and how many posts it made."""

    outcome: Outcome = field(default_factory=Outcome)
    posts: int = 0


def lanes(shard: list[Delivery], limit: int = MAX_PAYLOAD_BYTES) -> list[Lane]:
    """The invocations that post `shard`: lanes run in parallel, a lane's payloads one after
    another. Each connection is in one lane; only a connection owed more than `limit` bytes
    has a lane of several pieces, in its frames' order."""
    out: list[Lane] = []
    batch: list[Delivery] = []
    size = _WRAPPER
    for delivery in shard:
        cost = len(dumps([delivery.connection_id, delivery.frames]).encode()) + 1
        if _WRAPPER + cost > limit:
            out.append([[piece] for piece in _pieces(delivery, limit)])
            continue
        if batch and size + cost > limit:
            out.append([batch])
            batch, size = [], _WRAPPER
        batch.append(delivery)
        size += cost
    if batch:
        out.append([batch])
    return out


def _pieces(delivery: Delivery, limit: int) -> list[Delivery]:
    """One connection's frames in consecutive pieces of at most `limit` encoded bytes each (a
    frame is never cut: a single frame over the limit is a piece of its own)."""
    pieces: list[Delivery] = []
    frames: list[str] = []
    empty = _WRAPPER + len(dumps([delivery.connection_id, []]).encode())
    size = empty
    for frame in delivery.frames:
        cost = len(dumps(frame).encode()) + 1
        if frames and size + cost > limit:
            pieces.append(Delivery(delivery.connection_id, frames))
            frames, size = [], empty
        frames.append(frame)
        size += cost
    pieces.append(Delivery(delivery.connection_id, frames))
    return pieces


class LambdaTransport:
    """Posts shards through synchronous invocations of `function_name` (a name or an ARN); the
    Lambda client is `client` or the container's (`ripple.aws.clients().awslambda`), and one
    invocation's payload stays under `payload_limit` bytes."""

    def __init__(self, function_name: str, client: Any = None, *, payload_limit: int = MAX_PAYLOAD_BYTES):
        if not function_name:
            raise ValueError("the poster function (RIPPLE_POSTER_FUNCTION) is not set")
        self.function_name = function_name
        self.payload_limit = payload_limit
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=INVOKES_IN_FLIGHT, thread_name_prefix="ripple-shard-invoke")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = clients().awslambda
        return self._client

    def post(self, shards: list[list[Delivery]], timeout: float) -> list[tuple[Outcome, int]]:
        """Each shard's (Outcome, posts), in the order given; raises ShardFailed if any shard
        failed or did not answer within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        runs = [(index, self._pool.submit(contextvars.copy_context().run, self._lane, lane))
                for index, shard in enumerate(shards) if shard for lane in self._encoded(shard)]
        done, pending = concurrent.futures.wait([f for _, f in runs], timeout=max(0.0, deadline - time.monotonic()))
        failures = sorted({f"shard {index}: {_reason(future)}" for index, future in runs if future in done
                           and future.exception() is not None})
        late = sorted({index for index, future in runs if future in pending})
        if late:
            failures.append(f"shard{'s' if len(late) > 1 else ''} {', '.join(map(str, late))}: "
                            f"no answer from {self.function_name} within {timeout:g} s")
        if failures:
            for reason in failures:
                logger.warning("poster shard failed", extra={"function": self.function_name, "reason": reason})
            raise ShardFailed("; ".join(failures))
        outcomes, posts = [Outcome() for _ in shards], [0] * len(shards)
        for index, future in runs:
            part = future.result()
            _add(outcomes[index], part.outcome)
            posts[index] += part.posts
        return list(zip(outcomes, posts))

    def close(self) -> None:
        """Stop taking shards; invocations in flight finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _encoded(self, shard: list[Delivery]) -> list[Encoded]:
        """The shard's lanes, encoded: usually one payload, the whole shard."""
        payload = dumps(shard_payload(shard)).encode()
        if len(payload) <= self.payload_limit:
            return [[(shard, payload)]]
        return [[(part, dumps(shard_payload(part)).encode()) for part in lane]
                for lane in lanes(shard, self.payload_limit)]

    def _lane(self, lane: Encoded) -> _Part:
        """Invoke the lane's payloads in order; once its connection is gone or owes frames, the
        later pieces are not posted (gone: dropped; owed: added to what is owed, in order)."""
        part = _Part()
        for position, (_, payload) in enumerate(lane):
            outcome, posts = self._invoke(payload)
            _add(part.outcome, outcome)
            part.posts += posts
            if position + 1 < len(lane) and (outcome.gone or outcome.owed):
                if outcome.owed:
                    later = [frame for rest, _ in lane[position + 1:] for d in rest for frame in d.frames]
                    part.outcome.owed[-1].frames.extend(later)
                break
        return part

    def _invoke(self, payload: bytes) -> tuple[Outcome, int]:
        try:
            response = self.client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                          Payload=payload)
            body = response["Payload"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ShardFailed(f"invoking {self.function_name} failed: {error.get('Code', 'error')}: "
                              f"{str(error.get('Message', ''))[:REASON_CHARS]}") from None
        except BotoCoreError as exc:
            raise ShardFailed(f"invoking {self.function_name} failed: {type(exc).__name__}") from None
        answer = _decoded(body)
        if response.get("FunctionError"):
            raise ShardFailed(f"{self.function_name} failed ({response['FunctionError']}): {_error_text(answer)}")
        if isinstance(answer, dict) and "error" in answer:
            raise ShardFailed(f"{self.function_name} refused the shard: {_error_text(answer['error'])}")
        if not isinstance(answer, dict):
            raise ShardFailed(f"{self.function_name} answered {type(answer).__name__}, not an outcome")
        try:
            return outcome_from(answer)
        except ShardFailed:
            # Not the answer itself: it may hold frames.
            raise ShardFailed(f"{self.function_name} answered an outcome with missing or mistyped fields "
                              f"(keys: {', '.join(sorted(map(str, answer)))[:REASON_CHARS]})") from None


def _decoded(body: bytes) -> Any:
    try:
        return loads(body) if body else None
    except ValueError:
        return None


def _error_text(error: Any) -> str:
    """`errorType: errorMessage` of a Lambda error (or a poster's refusal), shortened; never its
    stack trace."""
    if not isinstance(error, dict):
        return "no error details"
    kind = error.get("errorType") or error.get("type") or "Error"
    message = str(error.get("errorMessage") or error.get("message") or "")
    return f"{kind}: {message[:REASON_CHARS]}"


def _reason(future: concurrent.futures.Future) -> str:
    error = future.exception()
    return str(error) if isinstance(error, ShardFailed) else f"{type(error).__name__} while invoking"


def _add(total: Outcome, outcome: Outcome) -> None:
    total.delivered += outcome.delivered
    total.failed += outcome.failed
    total.retries += outcome.retries
    total.gone.extend(outcome.gone)
    total.owed.extend(outcome.owed)
