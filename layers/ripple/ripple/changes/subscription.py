"""The postgres_changes part of a `phx_join`: validate the bindings and make them storable."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from ripple import codec
from ripple.catalog import Catalog, TableInfo
from ripple.changes.filters import FilterError, parse_filter
from ripple.store import MAX_INDEXED_VALUE, Binding, eq_key, table_key

EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})


class SubscriptionError(ValueError):
    """Bindings that cannot be subscribed; str() is the `system` error message for the client."""


@dataclass(frozen=True)
class Subscriber:
    """Who the bindings are for: one channel of one connection, with its claims."""

    connection_id: str
    topic: str
    vsn: str
    role: str
    claims: dict[str, Any]
    exp: int
    join_ref: str | None


@dataclass
class Subscription:
    """A channel's validated bindings, the join reply's echo, and the eq columns to register."""

    echo: list[dict[str, Any]]
    bindings: list[Binding] = field(default_factory=list)
    indexed: dict[str, set[str]] = field(default_factory=dict)


def binding_id(params: dict[str, Any]) -> int:
    """A stable integer id for a binding's parameters, as Supabase derives one by hashing them."""
    key = codec.dumps([params.get("event"), params.get("schema"), params.get("table"),
                       params.get("filter"), params.get("select")])
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def echo(params: list[Any]) -> list[dict[str, Any]]:
    """The join reply's `postgres_changes`: each binding as sent, in order, plus its integer id.

    Raises SubscriptionError if the list is not a list of binding objects.
    """
    if not isinstance(params, list):
        raise SubscriptionError("postgres_changes must be a list")
    out = []
    for p in params:
        if not isinstance(p, dict):
            raise SubscriptionError("each postgres_changes binding must be an object")
        out.append({**p, "id": binding_id(p)})
    return out


def subscribe(params: list[dict[str, Any]], *, catalog: Catalog, subscriber: Subscriber,
              max_bindings: int) -> Subscription:
    """Validate every binding against the database (one round trip) and build the rows to store."""
    sub = Subscription(echo=echo(params))
    if len(params) > max_bindings:
        raise SubscriptionError(f"too many postgres_changes bindings: {len(params)} > {max_bindings}")
    for p in params:
        _check_shape(p)
    described = catalog.describe(_tables(params), subscriber.role)
    for p, shown in zip(params, sub.echo):
        schema, table = p.get("schema", "public"), p.get("table") or "*"
        text = p.get("filter") or None
        bucket = table_key(schema, table)
        if "*" not in (schema, table):
            bucket = _index(sub, p, described.get((schema, table), TableInfo()), subscriber.role) or bucket
        elif text:
            # Without one table there are no column types to check a filter against.
            raise SubscriptionError(f"Error parsing `filter` params: a filter needs a single table: {_describe(p)}")
        sub.bindings.append(Binding(
            connection_id=subscriber.connection_id, topic=subscriber.topic, id=shown["id"],
            event=p["event"], schema=schema, table=table, bucket=bucket, vsn=subscriber.vsn, filter=text,
            select=tuple(p["select"]) if p.get("select") is not None else None, role=subscriber.role,
            claims=codec.dumps(subscriber.claims), join_ref=subscriber.join_ref, exp=subscriber.exp))
    return sub


def recheck(catalog: Catalog, bindings: list[Binding], role: str) -> str | None:
    """Why `role` may no longer hold `bindings` (a table or a filtered or selected column it
    cannot read), or None if it may. One round trip."""
    tables = sorted({(b.schema, b.table) for b in bindings if "*" not in (b.schema, b.table)})
    described = catalog.describe(tables, role)
    for b in bindings:
        if "*" in (b.schema, b.table):
            continue
        info = described.get((b.schema, b.table), TableInfo())
        if not info.readable:
            return f"Error 401: Unauthorized: role {role!r} cannot read {b.schema}.{b.table}"
        try:
            parse_filter(b.filter).validate(info.types)
        except FilterError as exc:
            return f"Error 401: Unauthorized: role {role!r} cannot filter {b.schema}.{b.table}: {exc}"
        hidden = [c for c in b.select or () if c not in info.types]
        if hidden:
            return f"Error 401: Unauthorized: role {role!r} cannot read {b.schema}.{b.table}.{hidden[0]}"
    return None


def _describe(params: dict[str, Any]) -> str:
    return (f"[event: {params.get('event')}, schema: {params.get('schema')}, "
            f"table: {params.get('table', '*')}, filters: {params.get('filter') or []}]")


def _check_shape(p: dict[str, Any]) -> None:
    """Raises SubscriptionError for a binding whose fields have the wrong values or types."""
    event, schema, table = p.get("event"), p.get("schema", "public"), p.get("table") or "*"
    if not isinstance(event, str) or event not in EVENTS:
        raise SubscriptionError(f"invalid event {event!r} in {_describe(p)}: "
                                f"expected one of *, INSERT, UPDATE, DELETE")
    if not isinstance(schema, str) or not schema or not isinstance(table, str):
        raise SubscriptionError(f"invalid schema or table in {_describe(p)}")
    if schema == "*" and table != "*":
        raise SubscriptionError(f"a table needs a schema, not '*': {_describe(p)}")
    select = p.get("select")
    if select is not None and (not isinstance(select, list)
                               or not all(isinstance(c, str) and c for c in select)):
        raise SubscriptionError(f"`select` must be a list of column names in {_describe(p)}")
    if p.get("filter") is not None and not isinstance(p.get("filter"), str):
        raise SubscriptionError(f"`filter` must be a string in {_describe(p)}")
    if any("\x00" in text for text in (schema, table, p.get("filter") or "", *(select or ()))):
        raise SubscriptionError(f"names and filters cannot hold NUL characters: {_describe(p)}")


def _tables(params: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(p.get("schema", "public"), p["table"]) for p in params
                   if p.get("table") not in (None, "", "*") and p.get("schema", "public") != "*"})


def _index(sub: Subscription, p: dict[str, Any], info: TableInfo, role: str) -> str | None:
    """Check a one-table binding against what `role` sees of the table; the eq bucket its filter
    pins it to, if any (registered in `sub.indexed`)."""
    schema, table = p.get("schema", "public"), p["table"]
    if not info.published:
        raise SubscriptionError(
            "Unable to subscribe to changes with given parameters. Please check Realtime is "
            f"enabled for the given connect parameters: {_describe(p)}")
    if not info.readable:
        raise SubscriptionError(f"Error 401: Unauthorized: role {role!r} cannot read {schema}.{table}")
    try:
        flt = parse_filter(p.get("filter") or None)
        flt.validate(info.types)
    except FilterError as exc:
        raise SubscriptionError(f"Error parsing `filter` params: {exc}") from None
    for column in p.get("select") or ():
        if column not in info.types:
            raise SubscriptionError(f"`select` names unknown column {column!r} in {_describe(p)}")
    key = flt.eq_key(info.types)
    if key is None or len(key[1]) > MAX_INDEXED_VALUE:
        return None
    sub.indexed.setdefault(table_key(schema, table), set()).add(key[0])
    return eq_key(schema, table, key[0], key[1])
