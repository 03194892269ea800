"""A captured row change and the `postgres_changes` payload Supabase clients expect for it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ripple import codec

# Supabase's rule for a change too large to deliver: values whose JSON is longer than this many
# bytes are left out of record and old_record, and errors says "Error 413: Payload Too Large".
MAX_KEPT_VALUE_BYTES = 64
PAYLOAD_TOO_LARGE = "Error 413: Payload Too Large"


def commit_timestamp(value: dt.datetime) -> str:
    """Supabase's timestamp format: UTC, milliseconds, trailing Z."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Change:
    """One INSERT/UPDATE/DELETE of one row, with the row images as they were written."""

    id: int
    schema: str
    table: str
    type: str
    record: dict[str, Any] | None
    old_record: dict[str, Any] | None
    columns: list[dict[str, str]]
    commit_timestamp: str
    # Its place in the message log (the drain order); 0 when not known.
    position: int = 0
    _data: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_outbox(cls, row: dict[str, Any]) -> Change:
        return cls(id=row["id"], schema=row["schema_name"], table=row["table_name"], type=row["op"],
                   record=row["record"], old_record=row["old_record"], columns=row["columns"],
                   commit_timestamp=commit_timestamp(row["captured_at"]),
                   position=int(row.get("position") or 0))

    @cached_property
    def types(self) -> dict[str, str]:
        """Column name to Postgres type name (pg_type.typname)."""
        return {c["name"]: c["type"] for c in self.columns}

    @property
    def row(self) -> dict[str, Any]:
        """The image filters are evaluated on: the new row, or the old one for a DELETE."""
        image = self.old_record if self.type == "DELETE" else self.record
        return image or {}

    def data(self, select: tuple[str, ...] | None = None, hidden: frozenset[str] = frozenset(),
             show_old: bool = True, cut: bool = False) -> dict[str, Any]:
        """The payload's `data`: `record` absent on DELETE, `old_record` absent on INSERT.

        `select` keeps only those columns, `hidden` drops the ones the subscriber's role may not
        SELECT, and `show_old=False` empties an UPDATE's old image the subscriber could not read.
        `cut=True` is the payload of a change too large to deliver whole: values longer than
        MAX_KEPT_VALUE_BYTES are left out and `errors` says so. Built once per distinct view and
        reused for every subscriber sharing it.
        """
        view = (select, hidden, show_old, cut)
        cached = self._data.get(view)
        if cached is not None:
            return cached

        def visible(name: str) -> bool:
            return name not in hidden and (select is None or name in select)

        def shown(image: dict[str, Any]) -> dict[str, Any]:
            if select is None and not hidden and not cut:
                return image
            return {k: v for k, v in image.items() if visible(k) and not (cut and _too_long(v))}

        data: dict[str, Any] = {
            "schema": self.schema,
            "table": self.table,
            "commit_timestamp": self.commit_timestamp,
            "type": self.type,
            "columns": [c for c in self.columns if visible(c["name"])],
            "errors": [PAYLOAD_TOO_LARGE] if cut else None,
        }
        if self.type != "DELETE":
            data["record"] = shown(self.record or {})
        if self.type != "INSERT":
            data["old_record"] = shown(self.old_record or {}) if show_old else {}
        self._data[view] = data
        return data


def _too_long(value: Any) -> bool:
    return len(codec.dumps(value).encode()) > MAX_KEPT_VALUE_BYTES
