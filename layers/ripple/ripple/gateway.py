"""The API Gateway `@connections` management API: push frames to connected clients."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from ripple.aws import clients
from ripple.config import settings
from ripple.log import logger


class Gone(Exception):
    """The connection no longer exists (HTTP 410); its rows should be removed."""


@dataclass
class Delivery:
    """The frames owed to one connection, in the order they must arrive."""

    connection_id: str
    frames: list[str]


@dataclass
class Outcome:
    """What a round of deliveries did: connections found gone (410), and failures."""

    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: int = 0


@dataclass
class ConnectionsApi:
    """PostToConnection over boto3's `apigatewaymanagementapi`; `posts` counts calls."""

    client: Any
    posts: int = 0
    # Attempts botocore repeated (throttling, 5xx) on posts that then succeeded.
    retries: int = 0
    concurrency: int = 32
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def deliver(self, deliveries: list[Delivery]) -> Outcome:
        """Post every delivery: connections concurrently, each connection's frames in order.

        A gone connection stops its own frames only; other errors are logged and counted.
        """
        outcome = Outcome()
        if not deliveries:
            return outcome
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        for delivery, result in zip(deliveries, self._pool.map(self._post_all, deliveries)):
            if result == "gone":
                outcome.gone.append(delivery.connection_id)
            elif result == "failed":
                outcome.failed += 1
            else:
                outcome.delivered += len(delivery.frames)
        return outcome

    def _post_all(self, delivery: Delivery) -> str:
        try:
            for frame in delivery.frames:
                self.post(delivery.connection_id, frame)
        except Gone:
            return "gone"
        except Exception:
            logger.exception("delivery failed", extra={"connection_id": delivery.connection_id})
            return "failed"
        return "ok"

    @classmethod
    def from_settings(cls) -> ConnectionsApi:
        endpoint = settings().connections_endpoint
        if not endpoint:
            raise RuntimeError("RIPPLE_CONNECTIONS_ENDPOINT is not set")
        return cls(clients().connections_api(endpoint), concurrency=settings().post_concurrency)

    def post(self, connection_id: str, data: str) -> None:
        """Send one text frame; raises Gone for a closed connection."""
        self.posts += 1
        try:
            answer = self.client.post_to_connection(ConnectionId=connection_id, Data=data.encode())
            self.retries += answer.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        except self.client.exceptions.GoneException:
            raise Gone(connection_id) from None
        except ClientError as exc:
            # A 4xx other than 410 (payload too large, forbidden) is not worth a retry.
            logger.warning("post_to_connection failed", extra={"connection_id": connection_id,
                                                               "error": exc.response["Error"]["Code"]})
            raise

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
