"""Postgres ``json``/``jsonb`` and array types as a filter sees them: equality only.

A json filter value is parsed as JSON and equal to a record's value when jsonb would call
them equal (``1 == 1.0``, key order ignored); an array filter value is a Postgres array
literal such as ``{1,"a b",NULL}`` whose elements are read as the element type. Neither has
a canonical index text.

>>> from ripple.changes.filters.pgtypes import int_type
>>> int_array = array_type("_int4", int_type("int4"))
>>> int_array.from_text("{1, +2, NULL}") == int_array.from_json([1, 2, None])
True
>>> jsonb = json_type("jsonb")
>>> jsonb.from_text('{"b": [1, 2], "a": 1.0}') == jsonb.from_json({"a": 1, "b": [1, 2]})
True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ripple.changes.filters.exceptions import Invalid, shown, syntax_error
from ripple.changes.filters.pgtypes import ColumnType

_MAX_ARRAY_DIMENSIONS = 6  # Postgres' MAXDIM


def _reject_constant(word: str) -> Any:
    raise ValueError(f"{word} is not valid JSON")


def json_key(value: Any) -> Any:
    """A hashable key equal for JSON values jsonb calls equal (1 == 1.0, key order ignored).

    >>> json_key({"a": [1, True]}) == json_key({"a": [1.0, True]})
    True
    >>> json_key(True) == json_key(1)
    False
    """
    if value is None:
        return ("null",)
    if isinstance(value, bool):  # before numbers: True must not equal 1
        return ("bool", value)
    if isinstance(value, int):
        return ("number", Decimal(value))
    if isinstance(value, float):
        return ("number", Decimal(repr(value)))
    if isinstance(value, Decimal):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(json_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, json_key(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def json_type(name: str) -> ColumnType:
    """``json`` or ``jsonb``; filter text must be strict JSON (no ``NaN``, no ``Infinity``)."""
    def from_text(text: str) -> Any:
        try:
            value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
            return json_key(value)
        except (ValueError, RecursionError):
            raise syntax_error(name, text) from None

    def from_json(value: Any) -> Any:
        try:
            return json_key(value)
        except (TypeError, RecursionError):
            raise syntax_error(name, value) from None

    return ColumnType(name, "json", from_text, from_json)


def array_literal(text: str) -> list:
    """The nested lists of element texts (None for NULL) in a literal like ``{1,"a b",NULL}``.

    >>> array_literal('{1, "a b", NULL, {"x\\\\"y"}}')
    ['1', 'a b', None, ['x"y']]
    >>> array_literal("{1,2")
    Traceback (most recent call last):
      ...
    ripple.changes.filters.exceptions.Invalid: malformed array literal: "{1,2"
    """
    malformed = Invalid(f'malformed array literal: "{shown(text)}"')
    position = 0

    def skip_space() -> None:
        nonlocal position
        while position < len(text) and text[position].isspace():
            position += 1

    def element() -> str | None:
        nonlocal position
        if text.startswith('"', position):
            chars, position = [], position + 1
            while position < len(text) and text[position] != '"':
                if text[position] == "\\":
                    position += 1
                if position < len(text):
                    chars.append(text[position])
                    position += 1
            if position >= len(text):
                raise malformed
            position += 1
            return "".join(chars)
        chars = []
        while position < len(text) and text[position] not in ',{}"':
            if text[position] == "\\":
                position += 1
                if position == len(text):
                    raise malformed
            chars.append(text[position])
            position += 1
        bare = "".join(chars).strip()
        if not bare:
            raise malformed
        return None if bare.upper() == "NULL" else bare

    def array(depth: int) -> list:
        nonlocal position
        if depth > _MAX_ARRAY_DIMENSIONS or not text.startswith("{", position):
            raise malformed
        position += 1
        items: list = []
        skip_space()
        if text.startswith("}", position):
            position += 1
            return items
        while True:
            skip_space()
            items.append(array(depth + 1) if text.startswith("{", position) else element())
            skip_space()
            if text.startswith(",", position):
                position += 1
            elif text.startswith("}", position):
                position += 1
                return items
            else:
                raise malformed

    skip_space()
    items = array(1)
    skip_space()
    if position != len(text):
        raise malformed
    return items


def array_type(name: str, element: ColumnType) -> ColumnType:
    """The array type ``name`` (``_int4``, ``_text`` ...) of ``element``: tuples of its keys.

    >>> jsonb_array = array_type("_jsonb", json_type("jsonb"))
    >>> written = jsonb_array.from_text('{"{\\\\"a\\\\": 1}","[1,2]"}')
    >>> written == jsonb_array.from_json([{"a": 1}, [1, 2]])
    True
    """
    # json elements are whole JSON values, so a nested list there is not a dimension.
    nested = element.kind != "json"

    def keys(items: list, read: Callable[[Any], Any]) -> tuple:
        return tuple(
            None if item is None
            else keys(item, read) if nested and isinstance(item, list)
            else read(item)
            for item in items
        )

    def from_text(text: str) -> tuple:
        return keys(array_literal(text), element.from_text)

    def from_json(value: Any) -> tuple:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, list):
            return keys(value, element.from_json)
        raise syntax_error(name, value)

    return ColumnType(name, "array", from_text, from_json)
