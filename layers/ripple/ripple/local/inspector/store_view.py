"""Everything the local DynamoDB tables hold, read for the Inspector: connections with their
channels, bindings and presence. Scans, which is fine for a developer's page on moto — the
realtime path itself only ever Queries."""
from __future__ import annotations

from typing import Any

from ripple import codec
from ripple.store import Binding, DynamoDBStore, Member
from ripple.store.dynamodb import _is_binding, _is_member, _plain


def _scan(store: DynamoDBStore, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = store.client.scan(**kwargs)
        rows.extend(_plain(item) for item in page.get("Items", ()))
        if "LastEvaluatedKey" not in page:
            return rows
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def bindings_and_members(store: DynamoDBStore) -> tuple[list[Binding], list[Member]]:
    """Every stored binding and channel membership."""
    bindings, members = [], []
    for row in _scan(store, store.bindings_table):
        if _is_member(row):
            members.append(DynamoDBStore._member(row))
        elif _is_binding(row):
            bindings.append(DynamoDBStore._binding(row))
    return bindings, members


def bindings_on(store: DynamoDBStore, schema: str, table: str) -> list[Binding]:
    """Every binding a change to schema.table could concern: that table's, its schema's `*`, `*.*`."""
    return [b for b in bindings_and_members(store)[0]
            if b.schema in (schema, "*") and b.table in (table, "*")]


def sub_of(claims: str) -> str | None:
    try:
        value = codec.loads(claims or "{}").get("sub")
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def connections(store: DynamoDBStore) -> list[dict[str, Any]]:
    """Each open connection: role, `sub`, last heard, and its channels with bindings and presence."""
    bindings, members = bindings_and_members(store)
    out = []
    for row in sorted(_scan(store, store.connections_table), key=lambda r: -int(r.get("connected_at", 0))):
        cid = row["connection_id"]
        channels: dict[str, dict[str, Any]] = {}
        for m in members:
            if m.connection_id == cid:
                channels[m.topic] = {"topic": m.topic, "private": m.private, "role": m.role,
                                     "sub": sub_of(m.claims), "presence_key": m.presence_key,
                                     "presence": m.presence, "exp": m.exp, "bindings": []}
        for b in bindings:
            if b.connection_id == cid:
                channel = channels.setdefault(b.topic, {"topic": b.topic, "bindings": [],
                                                        "role": b.role, "sub": sub_of(b.claims)})
                channel["bindings"].append({"id": b.id, "event": b.event, "schema": b.schema,
                                            "table": b.table, "filter": b.filter,
                                            "select": list(b.select) if b.select else None,
                                            "role": b.role, "sub": sub_of(b.claims), "exp": b.exp})
        seen = row.get("last_seen")
        out.append({"connection_id": cid, "role": row.get("role"), "sub": sub_of(row.get("claims", "{}")),
                    "vsn": row.get("vsn"), "connected_at": int(row.get("connected_at", 0)),
                    "last_heard": float(seen) * 1000 if seen is not None else int(row.get("connected_at", 0)),
                    "channels": sorted(channels.values(), key=lambda c: c["topic"])})
    return out
