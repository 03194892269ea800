"""The filter error a caller sees, and the reason the modules of the package raise inside it."""

from __future__ import annotations

from typing import Any

_SHOWN_FILTER_CHARS = 200
_SHOWN_VALUE_CHARS = 100


class FilterError(ValueError):
    """A filter that cannot be parsed or cannot apply to the table; ``str(e)`` says why."""


class Invalid(Exception):
    """Why a filter or a value is invalid; the public functions turn it into ``FilterError``.

    It carries only the reason, so the same value check serves a whole filter (whose text
    the message quotes) and ``canonical`` (which has no filter text).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def filter_message(text: str, reason: str) -> str:
    """The error text for a filter; a very long filter is shortened, the reason never is.

    >>> filter_message("id=eq.abc", 'invalid input syntax for type int8: "abc"')
    'invalid filter "id=eq.abc": invalid input syntax for type int8: "abc"'
    >>> len(filter_message("x" * 1000, "why"))
    225
    """
    if len(text) > _SHOWN_FILTER_CHARS:
        text = text[:_SHOWN_FILTER_CHARS] + "..."
    return f'invalid filter "{text}": {reason}'


def shown(value: Any) -> str:
    """A user value as quoted in a message, shortened so errors stay readable.

    >>> shown("abc"), len(shown("x" * 500))
    ('abc', 103)
    """
    text = str(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "..."


def syntax_error(type_name: str, value: Any) -> Invalid:
    """The reason for a value that does not read as ``type_name``, worded as Postgres does.

    >>> syntax_error("int4", "abc").reason
    'invalid input syntax for type int4: "abc"'
    """
    return Invalid(f'invalid input syntax for type {type_name}: "{shown(value)}"')


def range_error(type_name: str, value: Any) -> Invalid:
    """The reason for a value that reads as ``type_name`` but does not fit in it.

    >>> range_error("int2", 40000).reason
    'value "40000" is out of range for type int2'
    """
    return Invalid(f'value "{shown(value)}" is out of range for type {type_name}')
