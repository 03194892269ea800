"""The store's interface: what the realtime core keeps about connections, bindings and members.

Two implementations: `DynamoDBStore` (production and the local stack) and `MemoryStore` (unit
tests of the router and the fanout's planning). `calls` counts backend requests, for the cost
tests and benchmarks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from ripple.store.bindings import Binding
from ripple.store.connections import Connection, Entered
from ripple.store.members import Member


class Store(ABC):
    """Connections, postgres_changes bindings and channel members."""

    calls: int = 0

    # -- connections ----------------------------------------------------------------------------
    @abstractmethod
    def put_connection(self, connection: Connection) -> None: ...

    @abstractmethod
    def get_connection(self, connection_id: str) -> Connection | None: ...

    @abstractmethod
    def touch(self, connection_id: str, now: float) -> None:
        """Record that the client was heard from (a heartbeat); no-op for an unknown connection."""

    @abstractmethod
    def last_heard(self, connection_ids: Iterable[str]) -> dict[str, float]:
        """When each connection was last heard from (epoch seconds); unknown ones are absent."""

    @abstractmethod
    def enter_channel(self, connection_id: str, topic: str, limit: int) -> Entered:
        """Count `topic` among the connection's channels; returns the connection and whether it
        counted the topic already (a rejoin).

        Raises NoConnection if the connection is not registered, TooManyChannels past `limit`.
        """

    @abstractmethod
    def leave_channel(self, connection_id: str, topic: str) -> None:
        """Give the topic back from the connection's channel count."""

    @abstractmethod
    def spend(self, connection_id: str, limit: int, now: float, counter: str = "rate") -> bool:
        """Count one event in the connection's current one-second window of `counter` (messages,
        joins); False past `limit`."""

    @abstractmethod
    def delete_connection(self, connection_id: str) -> list[Member]:
        """Forget a connection and every row it held; returns the memberships it had."""

    # -- bindings -------------------------------------------------------------------------------
    @abstractmethod
    def add_bindings(self, bindings: list[Binding], indexed: dict[str, set[str]], expires_at: int) -> None:
        """Store a channel's bindings; `indexed` maps table buckets to the eq columns they add."""

    @abstractmethod
    def put_bindings(self, bindings: list[Binding], expires_at: int) -> None:
        """Overwrite bindings in place (same keys), e.g. with a channel's refreshed claims."""

    @abstractmethod
    def bindings_under(self, buckets: Iterable[str]) -> tuple[dict[str, list[Binding]], dict[str, set[str]]]:
        """Bindings per bucket, and the eq-indexed columns registered under table buckets."""

    @abstractmethod
    def channel(self, connection_id: str, topic: str) -> tuple[Member | None, list[Binding]]:
        """One channel of one connection: its membership and its bindings."""

    @abstractmethod
    def remove_channel(self, connection_id: str, topic: str) -> Member | None:
        """Delete every row of one channel; returns the membership it had."""

    # -- members --------------------------------------------------------------------------------
    @abstractmethod
    def put_member(self, member: Member, expires_at: int) -> None: ...

    @abstractmethod
    def member(self, connection_id: str, topic: str) -> Member | None: ...

    @abstractmethod
    def members(self, topic: str) -> list[Member]:
        """Every member of `topic`."""

    @abstractmethod
    def set_presence(self, connection_id: str, topic: str, meta: dict[str, Any] | None) -> None:
        """Record (or, with None, clear) what this connection tracks on `topic`, and list (or
        unlist) it among the presence holders the liveness sweep reads."""

    @abstractmethod
    def set_write_access(self, connection_id: str, topic: str, broadcast: bool, presence: bool) -> None:
        """Remember what a private channel's policies let this member send."""

    @abstractmethod
    def presence_holders(self) -> set[str]:
        """Connections tracking presence anywhere."""
