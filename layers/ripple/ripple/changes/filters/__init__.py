"""Filters of ``postgres_changes`` bindings: parse, validate, evaluate, index.

A binding's ``filter`` is the PostgREST-style string that realtime-js and realtime-py pass
through unchanged, such as ``amount=gt.100,status=in.(open,pending)``; every condition must
hold. Both sides of a condition are read as the column's Postgres type (``pg_type.typname``,
as in the ``columns`` payload) and compared as Postgres compares them, with SQL's
three-valued logic.

The package, one concern a module, imports one way (each only from those listed above it):

- ``exceptions``: ``FilterError``, and the reason a module raises inside it;
- ``patterns``: LIKE patterns and Postgres regexes, matched in linear time (RE2);
- ``grammar``: the filter text as ``Condition`` values (one class per operator family);
- ``pgtypes``, ``temporal``, ``documents``: how each Postgres type reads and compares;
- ``columns``: the type for a ``typname``, and ``canonical`` index text;
- ``predicates``: ``Filter``, ``parse_filter`` and the three-valued condition tests.

Typical use:

>>> types = {"amount": "numeric", "status": "text"}
>>> flt = parse_filter("amount=gt.100,status=in.(open,pending)")
>>> flt.validate(types)                                   # at join; FilterError if unusable
>>> flt.matches({"amount": 150, "status": "open"}, types)  # per change
True
>>> flt.eq_key(types) is None                             # no eq to index on
True
>>> parse_filter("status=eq.open").eq_key(types), canonical("open", "text")
(('status', 'open'), 'open')
"""

from ripple.changes.filters.columns import canonical
from ripple.changes.filters.exceptions import FilterError
from ripple.changes.filters.grammar import (
    IS_VALUES,
    MAX_IN_VALUES,
    OPERATORS,
    Comparison,
    Condition,
    IsTest,
    Membership,
    PatternMatch,
)
from ripple.changes.filters.predicates import Filter, parse_filter

__all__ = [
    "IS_VALUES",
    "MAX_IN_VALUES",
    "OPERATORS",
    "Comparison",
    "Condition",
    "Filter",
    "FilterError",
    "IsTest",
    "Membership",
    "PatternMatch",
    "canonical",
    "parse_filter",
]
