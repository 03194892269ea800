"""The one JSON codec: compact output, UTF-8 preserved, dates and decimals as Postgres prints them."""
from __future__ import annotations

import datetime as _dt
import decimal
import json
import uuid
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and "E" not in str(value) else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """Encode `value` as compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def loads(text: str | bytes) -> Any:
    """Decode JSON text; raises ValueError on malformed input."""
    return json.loads(text)
