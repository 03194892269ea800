"""Binding rows: one per postgres_changes binding of a channel, in buckets a change can derive.

A change reads its buckets with Queries: `schema.table`, `schema.*`, `*.*` and, for each column
some binding filters by equality, `schema.table|column=value`. The registry row (`sk` = `~eq`)
under `schema.table` lists those columns, so it arrives with the table bucket's Query.
"""
from __future__ import annotations

from dataclasses import dataclass

REGISTRY_SK = "~eq"
# DynamoDB partition keys hold up to 2048 bytes; longer equality values fall back to the table bucket.
MAX_INDEXED_VALUE = 1024


def table_key(schema: str, table: str) -> str:
    """The bucket of bindings on a whole table (or `*` for every table of a schema)."""
    return f"{schema}.{table}"


def eq_key(schema: str, table: str, column: str, value: str) -> str:
    """The bucket of bindings whose filter pins `column` to `value` (canonical text)."""
    return f"{schema}.{table}|{column}={value}"


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
    # Joined with `config.broadcast.replay_changes`: its pushes carry their log position.
    positions: bool = False

    @property
    def sort_key(self) -> str:
        return f"{self.connection_id}#{self.id}#{self.topic}"

    def live(self, now: float) -> bool:
        return self.exp == 0 or self.exp > now

    def wants(self, change_type: str) -> bool:
        return self.event == "*" or self.event == change_type
