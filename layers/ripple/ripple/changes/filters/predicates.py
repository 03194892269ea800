"""Filters evaluated as Postgres would run ``column <op> 'value'::column_type``.

Each condition compiles, for a table's column types, to a predicate from a ``to_jsonb(row)``
record to True, False or None (SQL UNKNOWN):

- NULL makes every comparison UNKNOWN, ``not.`` keeps UNKNOWN, and a filter matches only
  when every condition is TRUE; ``is`` and ``isdistinct`` are NULL-safe; ``eq.null``
  compares with the text ``'null'``, as PostgREST does; a column missing from the record
  (an unchanged TOAST value) is UNKNOWN;
- json/jsonb and array columns support equality only (``eq neq in isdistinct``);
- ``like ilike match imatch`` apply to text-like columns only (Postgres has no such
  operator for numbers, dates or uuids); on ``citext`` they ignore case, as citext's do.

Text orders by code point (the ``C`` collation), enums as text, not by declaration; and
``to_jsonb(row)`` renders SQL NULL and a jsonb ``null`` alike, so both read as NULL.

>>> flt = parse_filter("amount=gt.100,note=not.is.null")
>>> types = {"amount": "numeric", "note": "text"}
>>> flt.matches({"amount": 150, "note": "rush"}, types)
True
>>> flt.matches({"amount": 150, "note": None}, types), flt.matches({"note": "x"}, types)
(False, False)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ripple.changes.filters.columns import column_type
from ripple.changes.filters.exceptions import FilterError, Invalid, filter_message, shown
from ripple.changes.filters.grammar import (
    Comparison,
    Condition,
    IsTest,
    IsValue,
    Membership,
    PatternMatch,
    parse_conditions,
    render,
)
from ripple.changes.filters.patterns import like_matcher, regex_matcher
from ripple.changes.filters.pgtypes import ColumnType

Truth = bool | None  # SQL's three values; None is UNKNOWN
Record = Mapping[str, Any]
Predicate = Callable[[Record], Truth]


@dataclass(frozen=True)
class Filter:
    """The AND of its conditions; ``Filter(())`` matches every change."""

    conditions: tuple[Condition, ...]
    text: str = field(default="", compare=False)
    # Predicates compiled per column types, shared by every binding holding this instance.
    _compiled: dict[tuple[str | None, ...], tuple[Predicate, ...] | str] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __str__(self) -> str:
        """The filter text as given, or a canonical rendering that parses back to it.

        >>> str(Filter((Condition("my col", "eq", "a,b"),)))
        '"my col"=eq."a,b"'
        """
        return self.text or render(self.conditions)

    def validate(self, types: Mapping[str, str]) -> None:
        """Raise ``FilterError`` unless every column exists and every value reads as its type.

        >>> try:
        ...     parse_filter("id=eq.abc").validate({"id": "int8"})
        ... except FilterError as e:
        ...     print(e)
        invalid filter "id=eq.abc": invalid input syntax for type int8: "abc"
        """
        compiled = self._compile(types)
        if isinstance(compiled, str):
            raise FilterError(compiled)

    def matches(self, record: Record, types: Mapping[str, str]) -> bool:
        """True when every condition is TRUE for ``record`` (a ``to_jsonb(row)`` object).

        A filter that does not validate against ``types`` (the column was dropped or changed
        type since the join) matches nothing instead of raising, so one stale binding cannot
        break the fanout of a change; ``validate`` reports why.

        >>> stale = parse_filter("id=eq.7")
        >>> stale.matches({"id": 7}, {"id": "int4"}), stale.matches({"id": 7}, {"uid": "int4"})
        (True, False)
        """
        compiled = self._compile(types)
        if isinstance(compiled, str):
            return False
        for test in compiled:
            if test(record) is not True:
                return False
        return True

    def eq_key(self, types: Mapping[str, str]) -> tuple[str, str] | None:
        """``(column, canonical value)`` of the first plain ``eq`` usable as an index key.

        Conditions on columns absent from ``types`` or of types without a canonical form
        (json, arrays) are skipped. Any record this filter matches has
        ``canonical(record[column], types[column])`` equal to the returned value.

        >>> parse_filter("tags=eq.{a},n=eq.07").eq_key({"tags": "_text", "n": "int4"})
        ('n', '7')
        """
        for condition in self.conditions:
            if not (isinstance(condition, Comparison) and condition.op == "eq"
                    and not condition.negate and condition.column in types):
                continue
            reader = column_type(types[condition.column])
            if reader.canon is None:
                continue
            try:
                key = reader.from_text(condition.value)
            except Invalid as e:
                raise FilterError(filter_message(str(self), e.reason)) from None
            return condition.column, reader.canon(key)
        return None

    def _compile(self, types: Mapping[str, str]) -> tuple[Predicate, ...] | str:
        """The condition predicates for these column types, or the error message."""
        signature = tuple(types.get(c.column) for c in self.conditions)
        compiled = self._compiled.get(signature)
        if compiled is None:
            try:
                compiled = tuple(predicate(c, types) for c in self.conditions)
            except Invalid as e:
                compiled = filter_message(str(self), e.reason)
            self._compiled[signature] = compiled
        return compiled


_MATCH_ALL = Filter(())


@lru_cache(maxsize=4096)
def parse_filter(text: str | None) -> Filter:
    """The ``Filter`` for a binding's filter string; ``None`` or ``""`` matches everything.

    Raises ``FilterError`` for malformed text. Results are cached and shared, so callers
    must treat them as immutable (they are frozen).

    >>> parse_filter('status=not.in.(draft,"a,b")').conditions
    (Membership(column='status', op='in', value=('draft', 'a,b'), negate=True),)
    >>> parse_filter("status=eqq.draft")
    Traceback (most recent call last):
      ...
    ripple.changes.filters.exceptions.FilterError: invalid filter "status=eqq.draft": \
unknown operator "eqq"
    """
    if text is None or text == "":
        return _MATCH_ALL
    if not isinstance(text, str):
        raise FilterError(f"invalid filter {text!r}: a filter must be a string")
    try:
        conditions = parse_conditions(text)
    except Invalid as e:
        raise FilterError(filter_message(text, e.reason)) from None
    return Filter(conditions, text)


_ABSENT = object()
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "neq": operator.ne, "lt": operator.lt,
    "lte": operator.le, "gt": operator.gt, "gte": operator.ge}
_EQUALITY_OPS = frozenset({"eq", "neq", "in", "isdistinct", "is"})


def predicate(condition: Condition, types: Mapping[str, str]) -> Predicate:
    """The test of ``condition`` on records of a table with these column types.

    Raises ``Invalid`` when the column does not exist, the operator does not apply to its
    type, or the value does not read as it.

    >>> test = predicate(Condition("n", "lt", "10"), {"n": "int4"})
    >>> test({"n": 9}), test({"n": 10}), test({"n": None})
    (True, False, None)
    """
    pg_type = types.get(condition.column)
    if pg_type is None:
        raise Invalid(f'column "{shown(condition.column)}" does not exist')
    reader = column_type(pg_type)
    if reader.kind in ("json", "array") and condition.op not in _EQUALITY_OPS:
        raise _unsupported(condition, reader)
    column = condition.column
    test: Predicate
    match condition:
        case Comparison(op="isdistinct"):
            test = _distinct(column, reader, reader.from_text(condition.value))
        case Comparison():
            test = _compare(column, reader, _COMPARISONS[condition.op],
                            reader.from_text(condition.value))
        case Membership():
            wanted = frozenset(reader.from_text(v) for v in condition.value)
            test = _compare(column, reader, lambda key, _: key in wanted, None)
        case IsTest():
            if condition.value != "null" and reader.kind != "bool":
                raise Invalid(f'"is.{condition.value}" needs a bool column; '
                              f'"{column}" is {reader.name}')
            test = _is(column, reader, condition.value)
        case PatternMatch():
            if reader.kind != "text":
                raise _unsupported(condition, reader)
            ignore_case = condition.op in ("ilike", "imatch") or reader.fold_case
            matcher = like_matcher if condition.op in ("like", "ilike") else regex_matcher
            matches = matcher(condition.value, ignore_case)
            test = _compare(column, reader, lambda key, _: matches(key), None)
        case _:
            raise TypeError(f"not a filter condition: {condition!r}")
    return _negated(test) if condition.negate else test


def _unsupported(condition: Condition, reader: ColumnType) -> Invalid:
    return Invalid(f'operator "{condition.op}" is not supported for column '
                   f'"{condition.column}" of type {reader.name}')


def _compare(column: str, reader: ColumnType, compare: Callable[[Any, Any], bool],
             wanted: Any) -> Predicate:
    """``compare(record key, wanted)``, UNKNOWN when the value is NULL, absent or unreadable."""
    read = reader.from_json

    def test(record: Record) -> Truth:
        value = record.get(column, _ABSENT)
        if value is None or value is _ABSENT:
            return None
        try:
            return compare(read(value), wanted)
        except Invalid:
            return None

    return test


def _distinct(column: str, reader: ColumnType, wanted: Any) -> Predicate:
    """``IS DISTINCT FROM wanted``: NULL is distinct from any value, never UNKNOWN."""
    read = reader.from_json

    def test(record: Record) -> Truth:
        value = record.get(column, _ABSENT)
        if value is _ABSENT:
            return None
        if value is None:
            return True  # the filter value is never NULL
        try:
            return read(value) != wanted
        except Invalid:
            return None

    return test


def _is(column: str, reader: ColumnType, word: IsValue) -> Predicate:
    """``IS NULL``/``IS TRUE``/...: TRUE or FALSE for every present value, NULL included."""
    read = reader.from_json

    def test(record: Record) -> Truth:
        value = record.get(column, _ABSENT)
        if value is _ABSENT:
            return None
        if word in ("null", "unknown"):
            return value is None
        if value is None:
            return False
        try:
            return read(value) is (word == "true")
        except Invalid:
            return None

    return test


def _negated(test: Predicate) -> Predicate:
    """SQL ``NOT``: swaps TRUE and FALSE and keeps UNKNOWN."""
    def negated(record: Record) -> Truth:
        result = test(record)
        return None if result is None else not result

    return negated
