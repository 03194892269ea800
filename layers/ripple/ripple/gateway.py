"""The API Gateway `@connections` management API: push frames to connected clients."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from ripple.aws import clients
from ripple.config import settings
from ripple.log import logger


class Gone(Exception):
    """The connection no longer exists (HTTP 410); its rows should be removed."""


@dataclass
class ConnectionsApi:
    """PostToConnection over boto3's `apigatewaymanagementapi`; `posts` counts calls."""

    client: Any
    posts: int = 0

    @classmethod
    def from_settings(cls) -> ConnectionsApi:
        endpoint = settings().connections_endpoint
        if not endpoint:
            raise RuntimeError("RIPPLE_CONNECTIONS_ENDPOINT is not set")
        return cls(clients().connections_api(endpoint))

    def post(self, connection_id: str, data: str) -> None:
        """Send one text frame; raises Gone for a closed connection."""
        self.posts += 1
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data.encode())
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
