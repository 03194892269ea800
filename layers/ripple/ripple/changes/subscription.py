"""The postgres_changes part of a `phx_join`: validate the bindings and make them storable."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ripple import codec
from ripple.changes.binding import EVENTS, MAX_INDEXED_VALUE, Binding, binding_id, eq_key, table_key
from ripple.changes.filters import FilterError, parse_filter
from ripple.db import Database


class SubscriptionError(ValueError):
    """Bindings that cannot be subscribed; str() is the `system` error message for the client."""


@dataclass
class Subscription:
    """A channel's validated bindings, the join reply's echo, and the eq columns to register."""

    echo: list[dict[str, Any]]
    bindings: list[Binding] = field(default_factory=list)
    indexed: dict[str, set[str]] = field(default_factory=dict)


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


def _describe(params: dict[str, Any]) -> str:
    return (f"[event: {params.get('event')}, schema: {params.get('schema')}, "
            f"table: {params.get('table', '*')}, filters: {params.get('filter') or []}]")


def subscribe(params: list[dict[str, Any]], *, db: Database, connection_id: str, topic: str,
              vsn: str, role: str, claims: dict[str, Any], exp: int, join_ref: str | None,
              max_bindings: int) -> Subscription:
    """Validate every binding against the database (one round trip) and build the rows to store."""
    sub = Subscription(echo=echo(params))
    if len(params) > max_bindings:
        raise SubscriptionError(f"too many postgres_changes bindings: {len(params)} > {max_bindings}")
    for p in params:
        event, schema, table = p.get("event"), p.get("schema", "public"), p.get("table") or "*"
        if event not in EVENTS:
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

    tables = sorted({(p.get("schema", "public"), p.get("table")) for p in params
                     if p.get("table") not in (None, "", "*") and p.get("schema", "public") != "*"})
    described = _describe_tables(db, tables, role)
    for p, shown in zip(params, sub.echo):
        schema, table = p.get("schema", "public"), p.get("table") or "*"
        text = p.get("filter") or None
        select = tuple(p["select"]) if p.get("select") is not None else None
        bucket = table_key(schema, table)
        if table != "*" and schema != "*":
            published, readable, types = described.get((schema, table), (False, False, {}))
            if not published:
                raise SubscriptionError(
                    "Unable to subscribe to changes with given parameters. Please check Realtime is "
                    f"enabled for the given connect parameters: {_describe(p)}")
            if not readable:
                raise SubscriptionError(f"Error 401: Unauthorized: role {role!r} cannot read "
                                        f"{schema}.{table}")
            try:
                flt = parse_filter(text)
                flt.validate(types)
            except FilterError as exc:
                raise SubscriptionError(f"Error parsing `filter` params: {exc}") from None
            for column in select or ():
                if column not in types:
                    raise SubscriptionError(f"`select` names unknown column {column!r} in {_describe(p)}")
            key = flt.eq_key(types)
            if key is not None and len(key[1]) <= MAX_INDEXED_VALUE:
                bucket = eq_key(schema, table, key[0], key[1])
                sub.indexed.setdefault(table_key(schema, table), set()).add(key[0])
        elif text:
            # Without one table there are no column types to check a filter against.
            raise SubscriptionError(f"Error parsing `filter` params: a filter needs a single table: {_describe(p)}")
        sub.bindings.append(Binding(
            connection_id=connection_id, topic=topic, id=shown["id"], event=p["event"],
            schema=schema, table=table, bucket=bucket, vsn=vsn, filter=text, select=select,
            role=role, claims=codec.dumps(claims), join_ref=join_ref, exp=exp))
    return sub


def _describe_tables(db: Database, tables: list[tuple[str, str]], role: str
                     ) -> dict[tuple[str, str], tuple[bool, bool, dict]]:
    if not tables:
        return {}
    arg = codec.dumps([{"s": s, "t": t} for s, t in tables])
    with db.transaction() as conn:
        rows = db.execute(conn, "select * from realtime.describe(%s::jsonb, %s)", (arg, role))
    return {(r["schema_name"], r["table_name"]):
            (r["published"], r["readable"], {c["name"]: c["type"] for c in (r["columns"] or [])})
            for r in rows}


def recheck(db: Database, bindings: list[Binding], role: str) -> str | None:
    """Why `role` may no longer hold `bindings` (a table or a filtered or selected column it
    cannot read), or None if it may. One round trip."""
    tables = sorted({(b.schema, b.table) for b in bindings if "*" not in (b.schema, b.table)})
    described = _describe_tables(db, tables, role)
    for b in bindings:
        if "*" in (b.schema, b.table):
            continue
        _, can_read, types = described.get((b.schema, b.table), (False, False, {}))
        if not can_read:
            return f"Error 401: Unauthorized: role {role!r} cannot read {b.schema}.{b.table}"
        try:
            parse_filter(b.filter).validate(types)
        except FilterError as exc:
            return f"Error 401: Unauthorized: role {role!r} cannot filter {b.schema}.{b.table}: {exc}"
        hidden = [c for c in b.select or () if c not in types]
        if hidden:
            return f"Error 401: Unauthorized: role {role!r} cannot read {b.schema}.{b.table}.{hidden[0]}"
    return None
