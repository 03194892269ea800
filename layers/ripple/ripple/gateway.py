"""The API Gateway `@connections` management API: push frames to connected clients.

A post either lands, finds the connection gone (410), fails for that frame alone (another 4xx:
logged, the connection's later frames still go), or cannot get through (429, 5xx, a connection
error) after retries with backoff: then the frame and every later frame owed to that connection
come back as `owed`, in order, for the caller to keep and retry later.
"""
from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ripple.aws import clients
from ripple.config import settings
from ripple.log import logger


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


@dataclass
class ConnectionsApi:
    """PostToConnection over boto3's `apigatewaymanagementapi`; `posts` counts calls."""

    client: Any
    posts: int = 0
    concurrency: int = 32
    # Tries per frame before it is owed, and the backoff between them (seconds).
    attempts: int = 5
    base_backoff: float = 0.05
    max_backoff: float = 1.0
    # With keep_owed (the fanout, which stores them), frames owed per connection since the last
    # take_owing(): a connection that owes frames is not posted to again until they are taken,
    # so its frames keep their order. Without it (replies, live relays) they are logged, dropped.
    keep_owed: bool = False
    owing: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

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
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        for result in self._pool.map(self._post_all, deliveries):
            outcome.delivered += result.delivered
            outcome.failed += result.failed
            outcome.retries += result.retries
            outcome.gone.extend(result.gone)
            outcome.owed.extend(result.owed)
        for delivery in outcome.owed[len(held):]:
            if self.keep_owed:
                self.owing.setdefault(delivery.connection_id, []).extend(delivery.frames)
            else:
                logger.warning("frames not delivered", extra={"connection_id": delivery.connection_id,
                                                             "frames": len(delivery.frames)})
        return outcome

    def take_owing(self) -> dict[str, list[str]]:
        """The frames owed per connection since the last call, in order; posting to those
        connections resumes."""
        owing, self.owing = self.owing, {}
        return owing

    def _post_all(self, delivery: Delivery) -> Outcome:
        result = Outcome()
        for index, frame in enumerate(delivery.frames):
            try:
                result.retries += self._post_retrying(delivery.connection_id, frame)
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

    def _post_retrying(self, connection_id: str, frame: str) -> int:
        """Post one frame, retrying while it is Unreachable; returns how many retries it took."""
        for attempt in range(self.attempts):
            try:
                self.post(connection_id, frame)
                return attempt
            except Unreachable:
                if attempt + 1 == self.attempts:
                    raise
                # Full jitter: a throttled burst spreads out instead of retrying in lockstep.
                time.sleep(random.uniform(0, min(self.max_backoff, self.base_backoff * 2 ** attempt)))
        raise AssertionError("unreachable")

    @classmethod
    def from_settings(cls) -> ConnectionsApi:
        endpoint = settings().connections_endpoint
        if not endpoint:
            raise RuntimeError("RIPPLE_CONNECTIONS_ENDPOINT is not set")
        return cls(clients().connections_api(endpoint), concurrency=settings().post_concurrency)

    def post(self, connection_id: str, data: str) -> None:
        """Send one text frame once; raises Gone (410), Refused (another 4xx) or Unreachable."""
        self.posts += 1
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data.encode())
        except self.client.exceptions.GoneException:
            raise Gone(connection_id) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in RETRYABLE_CODES or status == 429 or status >= 500:
                raise Unreachable(f"{code or status}") from None
            logger.warning("post_to_connection refused", extra={"connection_id": connection_id,
                                                                "error": code, "bytes": len(data)})
            raise Refused(code) from None
        except BotoCoreError as exc:
            # Connection errors and timeouts: the request may not have left, or its answer was lost.
            raise Unreachable(type(exc).__name__) from None

    def send(self, connection_id: str, data: str) -> bool:
        """Post one frame that nothing keeps if it cannot get through (a reply, a notice):
        retried while Unreachable; False if it never landed. Raises Gone."""
        try:
            self._post_retrying(connection_id, data)
            return True
        except (Refused, Unreachable) as exc:
            logger.warning("frame not delivered", extra={"connection_id": connection_id,
                                                        "error": type(exc).__name__})
            return False

    def close(self, connection_id: str) -> None:
        """Close a client's socket (DeleteConnection); a gone connection is not an error."""
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except self.client.exceptions.GoneException:
            pass


@lru_cache(maxsize=1)
def connections_api() -> ConnectionsApi:
    """The container-wide management API client for RIPPLE_CONNECTIONS_ENDPOINT."""
    return ConnectionsApi.from_settings()
