"""The API Gateway `@connections` management API: push frames to connected clients.

A post either lands, finds the connection gone (410), fails for that frame alone (another 4xx:
logged, the connection's later frames still go), or cannot get through (429, 5xx, a connection
error) after retries with backoff: then the frame and every later frame owed to that connection
come back as `owed`, in order, for the caller to keep and retry later.

Posts go out through a poster: the lean one (`ripple.poster`, SigV4-signed HTTP/1.1 requests
on keep-alive connections, `RIPPLE_POSTER=lean`, the default) or boto3's `apigatewaymanagementapi` (`RIPPLE_POSTER=boto3`).
Either way they run on one background event loop, many connections at once
(`RIPPLE_POST_CONCURRENCY`), each connection's frames one after another. A small round through
the lean poster (`RIPPLE_POST_INLINE_MAX` connections at most) is first posted by the calling
thread itself, in waves of one frame per connection; only frames that need a retry go on to
the loop, that first try counted.
"""
from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from ripple.aws import clients
from ripple.config import settings
from ripple.log import logger
from ripple.poster import LeanPoster, background_loop
from ripple.sigv4 import Signer


class Gone(Exception):
    """The connection no longer exists (HTTP 410); its rows should be removed."""


class Unreachable(Exception):
    """A post that may succeed later (throttled, a server error, a broken connection)."""


class Refused(Exception):
    """A post API Gateway will never accept (a 4xx other than 410 and 429)."""


# API Gateway's message quota: PostToConnection refuses a larger frame (PayloadTooLargeException).
MAX_FRAME_BYTES = 128 * 1024

# Throttling and server errors: worth another try. Any other 4xx is final for that frame.
RETRYABLE_CODES = frozenset({"LimitExceededException", "TooManyRequestsException", "ThrottlingException",
                             "InternalServerErrorException", "ServiceUnavailableException"})


@dataclass
class Delivery:
    """The frames owed to one connection, in the order they must arrive."""

    connection_id: str
    frames: list[str]


@dataclass
class Outcome:
    """What a round of deliveries did: frames delivered, connections found gone (410), frames
    refused for good (`failed`), and per unreachable connection the frames still owed, in order."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: int = 0
    owed: list[Delivery] = field(default_factory=list)
    retries: int = 0


class Poster(Protocol):
    """One request to `@connections/{id}`: (HTTP status, error type); status 0 if no answer came."""

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]: ...

    async def delete(self, connection_id: str) -> tuple[int, str]: ...


class Boto3Poster:
    """A boto3 `apigatewaymanagementapi` client (or anything shaped like it) as a Poster; its
    blocking calls run on `threads` threads."""

    def __init__(self, client: Any, threads: int = 32):
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ripple-boto3-post")

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._call, self.client.post_to_connection,
            {"ConnectionId": connection_id, "Data": data})

    async def delete(self, connection_id: str) -> tuple[int, str]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._call, self.client.delete_connection, {"ConnectionId": connection_id})

    def _call(self, operation: Any, params: dict) -> tuple[int, str]:
        try:
            operation(**params)
            return 200, ""
        except self.client.exceptions.GoneException:
            return 410, "GoneException"
        except ClientError as exc:
            return (exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 400,
                    exc.response.get("Error", {}).get("Code", ""))
        except BotoCoreError as exc:
            # Connection errors and timeouts: the request may not have left, or its answer was lost.
            return 0, type(exc).__name__


def _check(status: int, error_type: str, connection_id: str, size: int) -> None:
    """Nothing for a 2xx; otherwise the exception that says what the answer means."""
    if 200 <= status < 300:
        return
    if status == 410 or error_type == "GoneException":
        raise Gone(connection_id)
    if status == 0 or status == 429 or status >= 500 or error_type in RETRYABLE_CODES:
        raise Unreachable(error_type or str(status))
    logger.warning("post_to_connection refused", extra={"connection_id": connection_id, "status": status,
                                                        "error": error_type, "bytes": size})
    raise Refused(error_type or str(status))


@dataclass
class ConnectionsApi:
    """PostToConnection and DeleteConnection through a poster (`client`: a Poster, or a boto3
    `apigatewaymanagementapi` client); `posts` counts the posts made, retries included."""

    client: Any
    posts: int = 0
    # Posts in flight at once (one per connection being served).
    concurrency: int = 32
    # Tries per frame before it is owed, and the backoff between them (seconds).
    attempts: int = 5
    base_backoff: float = 0.05
    max_backoff: float = 1.0
    # With keep_owed (the fanout, which stores them), frames owed per connection since the last
    # take_owing(): a connection that owes frames is not posted to again until they are taken,
    # so its frames keep their order. Without it (replies, live relays) they are logged, dropped.
    keep_owed: bool = False
    # A round to at most this many connections through the lean poster is posted by the
    # calling thread itself (LeanPoster.post_now), without the hop to the event loop; only what
    # needs retrying goes on to the loop. 0: every round goes through the loop.
    inline_max: int = 32
    owing: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _poster: tuple[Any, Poster] | None = field(default=None, repr=False)

    @property
    def poster(self) -> Poster:
        """What posts for `client`: the client itself if it is a Poster, else boto3's client (or
        a double of it, anything with post_to_connection) on a thread pool."""
        if self._poster is None or self._poster[0] is not self.client:
            client = self.client
            self._poster = (client, Boto3Poster(client) if hasattr(client, "post_to_connection") else client)
        return self._poster[1]

    def deliver(self, deliveries: list[Delivery]) -> Outcome:
        """Post every delivery: connections concurrently, each connection's frames in order."""
        outcome = Outcome()
        held = [d for d in deliveries if d.connection_id in self.owing]
        for delivery in held:
            self.owing[delivery.connection_id].extend(delivery.frames)
            outcome.owed.append(delivery)
        deliveries = [d for d in deliveries if d.connection_id not in self.owing]
        if not deliveries:
            return outcome
        self._post_round(deliveries, outcome)
        for delivery in outcome.owed[len(held):]:
            if self.keep_owed:
                self.owing.setdefault(delivery.connection_id, []).extend(delivery.frames)
            else:
                logger.warning("frames not delivered", extra={"connection_id": delivery.connection_id,
                                                             "frames": len(delivery.frames)})
        return outcome

    def _post_round(self, deliveries: list[Delivery], outcome: Outcome) -> None:
        """Post a round of deliveries (none to a connection that owes frames), adding what
        happened to `outcome`: from this process's background loop, or for a small round from
        this thread (`_post_inline`), then from the loop what that left to retry."""
        poster = self.poster
        if len(deliveries) <= min(self.inline_max, self.concurrency) and isinstance(poster, LeanPoster):
            deliveries = self._post_inline(poster, deliveries, outcome)
            if deliveries:
                background_loop().run(self._deliver(deliveries, outcome, tried=1))
            return
        background_loop().run(self._deliver(deliveries, outcome))

    def _post_inline(self, poster: LeanPoster, deliveries: list[Delivery], outcome: Outcome) -> list[Delivery]:
        """Post every delivery once from this thread, in waves: each wave sends the next frame of
        every connection still going, all at once, and waits for their answers, so a
        connection's frames stay in order. Returns, per connection whose frame could not get
        through (no answer, throttled, a server error), that frame and the ones after it: to
        retry, that first try counted."""
        left: list[Delivery] = []
        at = [0] * len(deliveries)
        going = list(range(len(deliveries)))
        while going:
            posts = [(deliveries[i].connection_id, deliveries[i].frames[at[i]].encode()) for i in going]
            self.posts += len(posts)
            answers = poster.post_now(posts)
            still = []
            for i, (connection_id, data), (status, error_type) in zip(going, posts, answers):
                try:
                    _check(status, error_type, connection_id, len(data))
                    outcome.delivered += 1
                except Gone:
                    outcome.gone.append(connection_id)
                    continue
                except Refused:
                    outcome.failed += 1
                except Unreachable:
                    left.append(Delivery(connection_id, deliveries[i].frames[at[i]:]))
                    continue
                at[i] += 1
                if at[i] < len(deliveries[i].frames):
                    still.append(i)
            going = still
        return left

    def take_owing(self) -> dict[str, list[str]]:
        """The frames owed per connection since the last call, in order; posting to those
        connections resumes."""
        owing, self.owing = self.owing, {}
        return owing

    async def _deliver(self, deliveries: list[Delivery], outcome: Outcome, tried: int = 0) -> None:
        """Post `deliveries`, adding what happened to `outcome`, connection by connection in
        order; each delivery's first frame has already failed `tried` times."""
        results: list[Outcome] = [Outcome()] * len(deliveries)
        pending = iter(enumerate(deliveries))

        async def serve() -> None:
            # Workers share one iterator: each takes the next connection once its last is done.
            for index, delivery in pending:
                results[index] = await self._post_all(delivery, tried)

        await asyncio.gather(*(serve() for _ in range(min(self.concurrency, len(deliveries)))))
        for result in results:
            outcome.delivered += result.delivered
            outcome.failed += result.failed
            outcome.retries += result.retries
            outcome.gone.extend(result.gone)
            outcome.owed.extend(result.owed)

    async def _post_all(self, delivery: Delivery, tried: int = 0) -> Outcome:
        result = Outcome()
        for index, frame in enumerate(delivery.frames):
            try:
                result.retries += await self._post_retrying(delivery.connection_id, frame,
                                                            tried if index == 0 else 0)
                result.delivered += 1
            except Gone:
                result.gone.append(delivery.connection_id)
                break
            except Refused:
                result.failed += 1
            except Unreachable:
                result.owed.append(Delivery(delivery.connection_id, delivery.frames[index:]))
                break
        return result

    async def _post_retrying(self, connection_id: str, frame: str, tried: int = 0) -> int:
        """Post one frame, retrying while it is Unreachable, `tried` failed tries already made;
        returns how many retries it took (those included)."""
        data = frame.encode()
        for attempt in range(tried, self.attempts):
            if attempt:
                # Full jitter: a throttled burst spreads out instead of retrying in lockstep.
                await asyncio.sleep(random.uniform(0, min(self.max_backoff, self.base_backoff * 2 ** (attempt - 1))))
            try:
                await self._post(connection_id, data)
                return attempt
            except Unreachable:
                if attempt + 1 >= self.attempts:
                    raise
        raise Unreachable(f"{tried} tries made")

    async def _post(self, connection_id: str, data: bytes) -> None:
        self.posts += 1
        status, error_type = await self.poster.post(connection_id, data)
        _check(status, error_type, connection_id, len(data))

    @classmethod
    def from_settings(cls) -> ConnectionsApi:
        config = settings()
        endpoint = config.connections_endpoint
        if not endpoint:
            raise RuntimeError("RIPPLE_CONNECTIONS_ENDPOINT is not set")
        if config.poster == "boto3":
            return cls(clients().connections_api(endpoint), concurrency=config.post_concurrency)
        return cls(lean_poster(endpoint, limit=config.post_concurrency, inline=config.post_inline_max),
                   concurrency=config.post_concurrency, inline_max=config.post_inline_max)

    def post(self, connection_id: str, data: str) -> None:
        """Send one text frame once; raises Gone (410), Refused (another 4xx) or Unreachable."""
        background_loop().run(self._post(connection_id, data.encode()))

    def send(self, connection_id: str, data: str) -> bool:
        """Post one frame that nothing keeps if it cannot get through (a reply, a notice):
        retried while Unreachable; False if it never landed. Raises Gone."""
        try:
            background_loop().run(self._post_retrying(connection_id, data))
            return True
        except (Refused, Unreachable) as exc:
            logger.warning("frame not delivered", extra={"connection_id": connection_id,
                                                        "error": type(exc).__name__})
            return False

    def close(self, connection_id: str) -> None:
        """Close a client's socket (DeleteConnection); a gone connection is not an error, another
        failure raises Refused or Unreachable."""
        status, error_type = background_loop().run(self.poster.delete(connection_id))
        try:
            _check(status, error_type, connection_id, 0)
        except Gone:
            pass


def lean_poster(endpoint: str, limit: int = 256, inline: int = 32) -> LeanPoster:
    """A LeanPoster for `endpoint`, signing with credentials from botocore's provider chain and
    the region it resolves (else the endpoint's, `{api}.execute-api.{region}.amazonaws.com`)."""
    import botocore.session

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials for signing @connections requests")
    host = (urlsplit(endpoint).hostname or "").split(".")
    region = session.get_config_variable("region") or (
        host[2] if len(host) > 3 and host[1] == "execute-api" else "us-east-1")
    return LeanPoster(endpoint, Signer(credentials, region, "execute-api"), limit=limit, inline=inline)


@lru_cache(maxsize=1)
def connections_api() -> ConnectionsApi:
    """The container-wide management API client for RIPPLE_CONNECTIONS_ENDPOINT."""
    return ConnectionsApi.from_settings()
