"""A captured row change and the `postgres_changes` payload Supabase clients expect for it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


def commit_timestamp(value: dt.datetime) -> str:
    """Supabase's timestamp format: UTC, milliseconds, trailing Z."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    _data: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_outbox(cls, row: dict[str, Any]) -> Change:
        return cls(id=row["id"], schema=row["schema_name"], table=row["table_name"], type=row["op"],
                   record=row["record"], old_record=row["old_record"], columns=row["columns"],
                   commit_timestamp=commit_timestamp(row["captured_at"]))

    @cached_property
    def types(self) -> dict[str, str]:
        """Column name to Postgres type name (pg_type.typname)."""
        return {c["name"]: c["type"] for c in self.columns}

    @property
    def row(self) -> dict[str, Any]:
        """The image filters are evaluated on: the new row, or the old one for a DELETE."""
        image = self.old_record if self.type == "DELETE" else self.record
        return image or {}

    def data(self, select: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The payload's `data`: `record` absent on DELETE, `old_record` absent on INSERT.

        Built once per distinct column selection and reused for every subscriber.
        """
        cached = self._data.get(select)
        if cached is not None:
            return cached
        keep = set(select) if select is not None else None

        def cut(image: dict[str, Any]) -> dict[str, Any]:
            return image if keep is None else {k: v for k, v in image.items() if k in keep}

        data: dict[str, Any] = {
            "schema": self.schema,
            "table": self.table,
            "commit_timestamp": self.commit_timestamp,
            "type": self.type,
            "columns": self.columns if keep is None else [c for c in self.columns if c["name"] in keep],
            "errors": None,
        }
        if self.type != "DELETE":
            data["record"] = cut(self.record or {})
        if self.type != "INSERT":
            data["old_record"] = cut(self.old_record or {})
        self._data[select] = data
        return data
