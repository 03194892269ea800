"""What the database says about a subscriber: which tables it may read, with which columns, and
what realtime.messages' policies allow it on a private channel.

`PostgresCatalog` asks Postgres (one round trip per question); the router and subscriptions take
any `Catalog`, so their unit tests can answer from memory.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ripple import codec
from ripple.db import Database, database


@dataclass(frozen=True)
class ChannelAccess:
    read_broadcast: bool
    read_presence: bool
    write_broadcast: bool
    write_presence: bool


@dataclass(frozen=True)
class TableInfo:
    """One table as a role sees it: published for realtime, readable, its readable columns' types."""

    published: bool = False
    readable: bool = False
    types: dict[str, str] = field(default_factory=dict)


class Catalog(ABC):
    @abstractmethod
    def describe(self, tables: list[tuple[str, str]], role: str) -> dict[tuple[str, str], TableInfo]:
        """Each (schema, table) as `role` sees it; tables that do not exist are absent."""

    @abstractmethod
    def channel_access(self, role: str, claims: dict[str, Any], channel: str) -> ChannelAccess:
        """realtime.messages' policies evaluated as `role` with `claims` for `channel`."""


@dataclass
class PostgresCatalog(Catalog):
    db: Callable[[], Database] = database

    def describe(self, tables: list[tuple[str, str]], role: str) -> dict[tuple[str, str], TableInfo]:
        if not tables:
            return {}
        arg = codec.dumps([{"s": s, "t": t} for s, t in tables])
        rows = self.db().query("select * from realtime.describe(%s::jsonb, %s)", (arg, role))
        return {(r["schema_name"], r["table_name"]):
                TableInfo(r["published"], r["readable"], {c["name"]: c["type"] for c in (r["columns"] or [])})
                for r in rows}

    def channel_access(self, role: str, claims: dict[str, Any], channel: str) -> ChannelAccess:
        row = self.db().query("select * from realtime.channel_access(%s, %s::jsonb, %s)",
                              (role, codec.dumps(claims), channel))[0]
        return ChannelAccess(**row)
