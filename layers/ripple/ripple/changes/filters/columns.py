"""The ``ColumnType`` for a column's ``typname``, and the canonical text of a value of it."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ripple.changes.filters.documents import array_type, json_type
from ripple.changes.filters.exceptions import FilterError, Invalid
from ripple.changes.filters.pgtypes import (
    ColumnType,
    bool_type,
    float_type,
    int_type,
    numeric_type,
    text_type,
    uuid_type,
)
from ripple.changes.filters.temporal import temporal_type

_SCALAR_TYPES: dict[str, Callable[[str], ColumnType]] = {
    "int2": int_type, "int4": int_type, "int8": int_type,
    "float4": float_type, "float8": float_type,
    "numeric": numeric_type,
    "bool": bool_type,
    "uuid": uuid_type,
    "timestamptz": temporal_type, "timestamp": temporal_type, "date": temporal_type,
    "time": temporal_type, "timetz": temporal_type,
    "json": json_type, "jsonb": json_type,
}


@lru_cache(maxsize=512)
def column_type(pg_type: str) -> ColumnType:
    """The reader for a ``typname``; ``_x`` is an array of ``x``, anything unknown is text.

    >>> column_type("_int4").kind, column_type("mood_enum").kind
    ('array', 'text')
    """
    if pg_type.startswith("_") and len(pg_type) > 1:
        return array_type(pg_type, column_type(pg_type[1:]))
    return _SCALAR_TYPES.get(pg_type, text_type)(pg_type)


def canonical(value: Any, pg_type: str) -> str | None:
    """The text that equal values of ``pg_type`` share, for an equality index; else None.

    ``value`` is filter text (a ``str``) or a value from ``to_jsonb(row)``; both sides of an
    equality land on the same string. SQL NULL and types without a safe canonical form
    (json, jsonb, arrays) give None. Raises ``FilterError`` when ``value`` cannot be read as
    ``pg_type``.

    >>> canonical("1.50", "numeric"), canonical(1.5, "numeric")
    ('1.5', '1.5')
    >>> canonical("2024-01-01 10:00+02", "timestamptz")
    '2024-01-01T08:00:00+00:00'
    >>> canonical({"a": 1}, "jsonb") is None, canonical(None, "int4") is None
    (True, True)
    >>> canonical("x", "int4")
    Traceback (most recent call last):
      ...
    ripple.changes.filters.exceptions.FilterError: invalid input syntax for type int4: "x"
    """
    if value is None:
        return None
    reader = column_type(pg_type)
    if reader.canon is None:
        return None
    try:
        if isinstance(value, str):
            key = reader.from_text(value)
        else:
            key = reader.from_json(value)
    except Invalid as e:
        raise FilterError(e.reason) from None
    return reader.canon(key)
