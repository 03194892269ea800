"""A postgres_changes binding: one `{event, schema, table, filter}` a channel listens to."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from ripple import codec

EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})
# DynamoDB partition keys hold up to 2048 bytes; longer equality values fall back to the table bucket.
MAX_INDEXED_VALUE = 1024


def table_key(schema: str, table: str) -> str:
    """The bucket of bindings on a whole table (or `*` for every table of a schema)."""
    return f"{schema}.{table}"


def eq_key(schema: str, table: str, column: str, value: str) -> str:
    """The bucket of bindings whose filter pins `column` to `value` (canonical text)."""
    return f"{schema}.{table}|{column}={value}"


def binding_id(params: dict[str, Any]) -> int:
    """A stable integer id for a binding's parameters, as Supabase derives one by hashing them."""
    key = codec.dumps([params.get("event"), params.get("schema"), params.get("table"),
                       params.get("filter"), params.get("select")])
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Binding:
    """A stored subscription of one channel of one connection to changes of a table."""

    connection_id: str
    topic: str
    id: int
    event: str
    schema: str
    table: str
    bucket: str
    vsn: str
    filter: str | None = None
    select: tuple[str, ...] | None = None
    role: str = "anon"
    claims: str = "{}"
    join_ref: str | None = None
    # The subscriber's token expiry (epoch seconds); past it the binding receives nothing.
    exp: int = 0

    def live(self, now: float) -> bool:
        return self.exp == 0 or self.exp > now

    def wants(self, change_type: str) -> bool:
        return self.event == "*" or self.event == change_type
