"""AWS clients, created once per Lambda container and shared across invocations."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling; connection pool sized for concurrent posts.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=64)
# Email and SMS sends retry in ripple.notify.providers, which knows which errors are final
# and which sends may have arrived: botocore makes exactly one request (its `max_attempts`
# counts retries, `total_max_attempts` requests), and gives up on a silent answer well within
# the delivery function's timeout.
_SEND_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1},
                      connect_timeout=5, read_timeout=10)
# Posts to @connections retry in ripple.gateway, which keeps what cannot get through.
_POST_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=64)


@dataclass
class Clients:
    """Lazily created boto3 clients; endpoints follow AWS_ENDPOINT_URL_* (moto locally)."""

    @cached_property
    def dynamodb(self):
        return boto3.client("dynamodb", config=_CONFIG)

    @cached_property
    def secretsmanager(self):
        return boto3.client("secretsmanager", config=_CONFIG)

    @cached_property
    def sesv2(self):
        return boto3.client("sesv2", config=_SEND_CONFIG)

    @cached_property
    def sns(self):
        return boto3.client("sns", config=_SEND_CONFIG)

    def connections_api(self, endpoint: str):
        return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=_POST_CONFIG)


@lru_cache(maxsize=1)
def clients() -> Clients:
    return Clients()
