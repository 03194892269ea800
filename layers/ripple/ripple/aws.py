"""AWS clients, created once per Lambda container and shared across invocations.

Every client Ripple creates reports each operation it is about to call to the observers added
with `observe_calls`: the IAM test records them and checks each against template.yaml.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from ripple.config import settings

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
# Synchronous invocations of the poster function (ripple.shards.invoke): botocore retries a
# throttled or failed request (2 more tries, backing off); a poster that had already posted
# part of its shard posts it again, which at-least-once delivery allows. The read timeout
# outlasts the shard timeout, so the transport's own deadline is what ends a slow shard, and a
# read timeout is not retried (that poster may still be posting).
# Invocations in flight at once: 64 shards (Settings.poster_shards' ceiling) and a few pieces of
# shards over the payload quota.
INVOKES_IN_FLIGHT = 96
_INVOKE_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5,
                        max_pool_connections=INVOKES_IN_FLIGHT)


@dataclass(frozen=True)
class Call:
    """One AWS operation as a client is about to send it: `service` is the endpoint prefix
    (`dynamodb`, `execute-api`, ...), `operation` the API name, `params` its arguments."""

    service: str
    operation: str
    params: dict[str, Any]
    endpoint: str | None = None


CallObserver = Callable[[Call], None]
_observers: list[CallObserver] = []


def observe_calls(observer: CallObserver) -> Callable[[], None]:
    """Have `observer` see every operation of every Ripple client; returns the undo."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


def report(call: Call) -> None:
    """Tell the observers about an operation made without boto3 (the lean `@connections` poster)."""
    for observer in list(_observers):
        observer(call)


def observed() -> bool:
    """Whether anything observes calls (so a hot path can skip building them)."""
    return bool(_observers)


def _report(client: Any) -> Any:
    signing = client.meta.service_model.signing_name
    endpoint = client.meta.endpoint_url

    def before_parameter_build(params, model, **_: Any) -> None:
        if _observers:
            report(Call(signing, model.name, dict(params), endpoint))

    # Fired once per API call with the caller's parameters (botocore's retries do not repeat it).
    client.meta.events.register("before-parameter-build", before_parameter_build)
    return client


@dataclass
class Clients:
    """Lazily created boto3 clients; endpoints follow AWS_ENDPOINT_URL_* (moto locally)."""

    @cached_property
    def dynamodb(self):
        return _report(boto3.client("dynamodb", config=_CONFIG))

    @cached_property
    def secretsmanager(self):
        return _report(boto3.client("secretsmanager", config=_CONFIG))

    @cached_property
    def secrets(self) -> SecretsProvider:
        """Powertools Parameters over this container's Secrets Manager client (values cached
        for the `max_age` each read asks for)."""
        return SecretsProvider(boto3_client=self.secretsmanager)

    @cached_property
    def sesv2(self):
        return _report(boto3.client("sesv2", config=_SEND_CONFIG))

    @cached_property
    def sns(self):
        return _report(boto3.client("sns", config=_SEND_CONFIG))

    @cached_property
    def awslambda(self):
        """The Lambda client that invokes the poster function."""
        return invoke_client()

    def connections_api(self, endpoint: str):
        return _report(boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=_POST_CONFIG))


def invoke_client(endpoint_url: str | None = None):
    """A Lambda client for synchronous invocations that may take RIPPLE_SHARD_TIMEOUT_SECONDS
    (`endpoint_url`: AWS_ENDPOINT_URL_LAMBDA's, or AWS's, when None)."""
    config = _INVOKE_CONFIG.merge(Config(read_timeout=settings().shard_timeout_seconds + 5))
    client = boto3.client("lambda", endpoint_url=endpoint_url, config=config)
    client.meta.events.register_first("needs-retry.lambda.Invoke", _no_retry_after_read_timeout)
    return _report(client)


def _no_retry_after_read_timeout(caught_exception: Exception | None = None, **_: Any) -> None:
    # Raising here ends botocore's retry loop with the timeout itself.
    if isinstance(caught_exception, ReadTimeoutError):
        raise caught_exception


@lru_cache(maxsize=1)
def clients() -> Clients:
    return Clients()


def secret(arn: str, *, max_age: int, refresh: bool = False) -> str:
    """The SecretString of `arn`, read again once it is `max_age` seconds old (or now, with
    `refresh`), so a rotated secret reaches warm containers."""
    value = clients().secrets.get(arn, max_age=max_age, force_fetch=refresh)
    if not isinstance(value, str):
        raise RuntimeError(f"secret {arn} has no SecretString")
    return value
