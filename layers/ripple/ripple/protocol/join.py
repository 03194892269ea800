"""The `phx_join` payload, typed: `{"config": {broadcast, presence, postgres_changes, private},
"access_token"}` as supabase-js and realtime-py send it (supabase/realtime's `payloads/config.ex`).

    JoinPayload.parse({"config": {"broadcast": {"self": True}, "private": True}})
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ripple.protocol.errors import ChannelError


class _Options(BaseModel):
    # Clients send more than Ripple reads: ignored, not refused.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields[info.field_name]
        if value is None:
            return field.get_default(call_default_factory=True)
        return value


# A replay returns at most this many messages or changes (Supabase: 25). While it is posted the
# drain waits, so this also bounds how long one join can delay live traffic.
MAX_REPLAY_LIMIT = 1000


class ReplayOptions(_Options):
    """`config.broadcast.replay`: Supabase's `{since, limit}` (since: epoch milliseconds), or
    Ripple's `after` (the `meta.id` of the last message the client saw)."""

    since: int | None = Field(None, ge=0, strict=True)
    after: int | None = Field(None, ge=0)
    limit: int = Field(25, ge=1, le=MAX_REPLAY_LIMIT, strict=True)

    @model_validator(mode="after")
    def _needs_a_start(self) -> ReplayOptions:
        if self.since is None and self.after is None:
            raise ValueError("replay needs `since` (epoch milliseconds) or `after` (a message id)")
        return self


class ChangesReplayOptions(_Options):
    """`config.broadcast.replay_changes`: replay the channel's postgres_changes after log
    position `after` (the last `position:<n>` the app saw) or captured since `since` (epoch
    milliseconds), at most `limit`. Under `broadcast` because that is the part of `config`
    realtime-js and realtime-py send as the app gave it."""

    after: int | None = Field(None, ge=0)
    since: int | None = Field(None, ge=0, strict=True)
    limit: int = Field(100, ge=1, le=MAX_REPLAY_LIMIT, strict=True)

    @model_validator(mode="after")
    def _needs_a_start(self) -> ChangesReplayOptions:
        if self.since is None and self.after is None:
            raise ValueError("replay_changes needs `after` (a position) or `since` (epoch milliseconds)")
        return self


class BroadcastOptions(_Options):
    echo_self: bool = Field(False, alias="self")
    ack: bool = False
    # realtime-js asks for a `system` message once changes will really flow.
    replication_ready: bool = False
    replay: ReplayOptions | None = None
    replay_changes: ChangesReplayOptions | None = None


class PresenceOptions(_Options):
    key: str = ""
    enabled: bool = False


class JoinConfig(_Options):
    broadcast: BroadcastOptions = Field(default_factory=BroadcastOptions)
    presence: PresenceOptions = Field(default_factory=PresenceOptions)
    postgres_changes: list[dict[str, Any]] = Field(default_factory=list)
    private: bool = False


class JoinPayload(_Options):
    config: JoinConfig = Field(default_factory=JoinConfig)
    access_token: Any = None

    @classmethod
    def parse(cls, payload: Any) -> JoinPayload:
        """The typed payload; raises ChannelError("InvalidJoinPayload", ...) naming what is wrong."""
        if not isinstance(payload, dict):
            raise ChannelError("InvalidJoinPayload", 'expected {"config": {...}}')
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ChannelError("InvalidJoinPayload", problems) from None
