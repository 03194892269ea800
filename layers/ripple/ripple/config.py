"""The one configuration object, read from RIPPLE_* environment variables."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime settings. Secrets come from env locally and from Secrets Manager on AWS."""

    model_config = SettingsConfigDict(env_prefix="RIPPLE_", extra="ignore")

    jwt_secret: str | None = None
    jwt_secret_arn: str | None = None
    # Asymmetric tokens (RS256/ES256) from Cognito, Auth0, Supabase Auth...: their JWKS document.
    jwks_url: str | None = None
    jwks_cache_seconds: int = 600
    # Accepted `aud` and `iss` values, comma-separated; unset accepts any. When set, every token
    # (the apikey on connect, a join's and a refresh's access_token) must carry one of them.
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    db_url: str | None = None
    db_secret_arn: str | None = None
    # Secrets Manager values are read again once this old, so a rotation reaches warm containers.
    secret_max_age_seconds: int = 300
    # TLS to the database named by the secret (RDS and RDS Proxy accept TLS; "verify-full" pins the CA).
    db_sslmode: str = "require"
    # An RDS Proxy endpoint to connect to instead of the secret's host (same user and password).
    db_host: str | None = None
    # Server-side prepared statements (psycopg prepares a statement run 5 times); off behind RDS
    # Proxy, where a prepared statement pins the client to one database connection.
    db_prepare: bool = True
    connections_table: str = "ripple-connections"
    bindings_table: str = "ripple-bindings"
    connections_endpoint: str | None = None
    # API Gateway closes any connection after 2 h; rows outlive that briefly, then TTL removes them.
    connection_ttl_seconds: int = 7200 + 600
    max_channels_per_connection: int = 100
    max_bindings_per_channel: int = 100
    # Client messages per connection per second (broadcast and presence), as Supabase's default.
    max_events_per_second: int = 100
    # Joins per connection per second (a reconnecting client rejoins all its channels at once).
    max_joins_per_second: int = 100
    # A client broadcast frame, below API Gateway's 32 KB frame quota: clients send each message
    # as one frame and a larger one closes the socket (1009), so this is what lets an oversize
    # broadcast get payload_size_exceeded instead.
    max_broadcast_bytes: int = 30 * 1024
    max_presence_bytes: int = 10 * 1024
    # Top-level keys of one tracked presence payload, as Supabase's "presence keys per object".
    max_presence_keys: int = 10
    # A presence holder silent this long (clients heartbeat every 25-30 s) is departed by the sweep.
    presence_timeout_seconds: int = 90
    drain_batch_size: int = 500
    max_posts_per_batch: int = 10_000
    # A bucket's bindings kept warm are Queried again once this old even when its version has
    # not changed (rows removed by DynamoDB's TTL bump no version; see store.warm).
    warm_max_age_seconds: float = Field(default=60.0, gt=0)
    # A connection whose posts keep failing (throttled, API Gateway errors) has its frames kept
    # and retried at each drain; past this many seconds it is closed, and its client reconnects.
    owed_deadline_seconds: float = 120.0
    # Posts to @connections in flight per process, and what sends them: `lean` (signed HTTP/1.1
    # requests, ~8x less CPU per post) or `boto3` (its apigatewaymanagementapi client).
    post_concurrency: int = 192
    poster: Literal["lean", "boto3"] = "lean"
    # A round of posts to at most this many connections is sent by the calling thread itself
    # on sockets it keeps (no hop to the event loop); 0 sends every round through the loop. A
    # round waits for its slowest answer before the next frames go: wide rounds are the loop's.
    post_inline_max: int = Field(default=32, ge=0, le=256)
    # Sharded posting: a round of at least `shard_threshold` deliveries is split by a stable hash
    # of the connection id across `poster_shards` posters (K) that post in parallel; the drain
    # acks once every shard has answered. `process`: worker processes over pipes (one per vCPU
    # of the fanout's container); `lambda`: parallel synchronous invocations of the poster
    # function `poster_function`. K = 1 (or a smaller round) posts from the drainer itself.
    poster_shards: int = Field(default=1, ge=1, le=64)
    shard_threshold: int = Field(default=200, ge=1)
    shard_transport: Literal["process", "lambda"] = "process"
    poster_function: str | None = None
    shard_timeout_seconds: float = Field(default=60.0, gt=0)
    # Notification delivery (SESv2 / SNS).
    mail_from: str = "Ripple <notifications@ripple.test>"
    ses_configuration_set: str | None = None
    sms_sender_id: str | None = None
    sms_max_segments: int = 3
    # A JSON list in the environment: RIPPLE_SMS_PRIORITIES='["high","urgent"]'.
    sms_priorities: list[Literal["low", "normal", "high", "urgent"]] = ["high", "urgent"]
    # The country of phone numbers stored without "+" (ISO 3166 alpha-2, e.g. "US"); unset
    # refuses them as invalid_phone rather than guessing.
    phone_default_region: str | None = None
    # Sends of one delivery, across invocations, before throttling or an outage fails it.
    notify_max_attempts: int = Field(default=20, ge=1)
    # Posts of one delivery status webhook call before it is left dead.
    webhook_max_attempts: int = Field(default=8, ge=1)
    # Where recipients reach the REST API (unsubscribe links); the local stack's by default.
    public_url: str = "http://127.0.0.1:54321"
    templates_dir: str | None = None

    @field_validator("ses_configuration_set", "sms_sender_id", "templates_dir", "db_host", "jwt_audience",
                     "jwt_issuer", "phone_default_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # CloudFormation passes an optional parameter left blank as an empty string.
        return None if value == "" else value

    @property
    def jwt_audiences(self) -> tuple[str, ...] | None:
        """The accepted audiences, or None when any is accepted."""
        return _listed(self.jwt_audience)

    @property
    def jwt_issuers(self) -> tuple[str, ...] | None:
        """The accepted issuers, or None when any is accepted."""
        return _listed(self.jwt_issuer)


def _listed(value: str | None) -> tuple[str, ...] | None:
    items = tuple(item.strip() for item in (value or "").split(",") if item.strip())
    return items or None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once per Lambda container."""
    return Settings()
