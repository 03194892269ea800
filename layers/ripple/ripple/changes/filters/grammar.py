"""The text of a filter: its terms as ``Condition`` values, and back to text.

The grammar is PostgREST's, as realtime-js and realtime-py pass it through::

    filter     = condition *("," condition)        ; every condition must hold (AND)
    condition  = column "=" ["not."] operator "." value
    column     = identifier | quoted               ; case is kept, never folded
    operator   = eq | neq | lt | lte | gt | gte | in | like | ilike | is
               | match | imatch | isdistinct
    value      = quoted | raw                      ; raw values are trimmed
    in-value   = "(" value *("," value) ")"        ; 1..100 values
    quoted     = DQUOTE *(char | "\\" char) DQUOTE ; a backslash escapes the next char

Commas inside double quotes or inside ``()``, ``[]``, ``{}`` do not separate conditions, so
``tags=eq.{a,b}`` and ``data=eq.{"k":1,"j":2}`` are single conditions; a raw value with an
unbalanced bracket must be quoted.

>>> parse_conditions('amount=gt.100,status=not.in.(open,"on hold")')
(Comparison(column='amount', op='gt', value='100', negate=False), \
Membership(column='status', op='in', value=('open', 'on hold'), negate=True))
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ripple.changes.filters.exceptions import Invalid, shown
from ripple.changes.filters.patterns import like_matcher, regex_matcher

ComparisonOp = Literal["eq", "neq", "lt", "lte", "gt", "gte", "isdistinct"]
PatternOp = Literal["like", "ilike", "match", "imatch"]
IsValue = Literal["null", "true", "false", "unknown"]

OPERATORS = frozenset({*get_args(ComparisonOp), "in", *get_args(PatternOp), "is"})
IS_VALUES: tuple[IsValue, ...] = get_args(IsValue)
MAX_IN_VALUES = 100


class Condition:
    """One ``column=[not.]op.value`` term, as the class of its operator's family.

    The families are ``Comparison``, ``Membership``, ``PatternMatch`` and ``IsTest``, each
    with the ``value`` its operators take. ``Condition(column, op, value, negate=False)``
    builds the family of ``op``, so a term can be written as it reads:

    >>> Condition("status", "in", ("draft", "a,b"), negate=True)
    Membership(column='status', op='in', value=('draft', 'a,b'), negate=True)
    >>> Condition("id", "eq", "5") == Comparison("id", "eq", "5")
    True
    """

    column: str
    op: str
    negate: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> Condition:
        if cls is not Condition:
            return object.__new__(cls)
        op = args[1] if len(args) > 1 else kwargs.get("op")
        family = _FAMILIES.get(op) if isinstance(op, str) else None
        if family is None:
            raise ValueError(f"unknown operator {op!r}")
        return object.__new__(family)


@dataclass(frozen=True)
class Comparison(Condition):
    """``eq neq lt lte gt gte isdistinct``: the column against one value read as its type."""

    column: str
    op: ComparisonOp
    value: str
    negate: bool = False

    def __post_init__(self) -> None:
        _check(self, _COMPARISON_OPS, str)


@dataclass(frozen=True)
class Membership(Condition):
    """``in``: the column equal to one of 1..100 values."""

    column: str
    op: Literal["in"]
    value: tuple[str, ...]
    negate: bool = False

    def __post_init__(self) -> None:
        _check(self, ("in",), tuple)


@dataclass(frozen=True)
class PatternMatch(Condition):
    """``like ilike`` (a LIKE pattern) or ``match imatch`` (a Postgres regex) on text."""

    column: str
    op: PatternOp
    value: str
    negate: bool = False

    def __post_init__(self) -> None:
        _check(self, _PATTERN_OPS, str)


@dataclass(frozen=True)
class IsTest(Condition):
    """``is``: NULL-safe test for null, or for true, false, unknown on a bool column."""

    column: str
    op: Literal["is"]
    value: IsValue
    negate: bool = False

    def __post_init__(self) -> None:
        _check(self, ("is",), str)
        if self.value not in IS_VALUES:
            raise ValueError(f'"is" takes one of {IS_VALUES}, not {self.value!r}')


_FAMILIES: dict[str, type[Condition]] = {
    **dict.fromkeys(get_args(ComparisonOp), Comparison),
    "in": Membership,
    **dict.fromkeys(get_args(PatternOp), PatternMatch),
    "is": IsTest,
}
_COMPARISON_OPS: dict[str, ComparisonOp] = {op: op for op in get_args(ComparisonOp)}
_PATTERN_OPS: dict[str, PatternOp] = {op: op for op in get_args(PatternOp)}
_IS_WORDS: dict[str, IsValue] = {word: word for word in IS_VALUES}


def _check(condition: Comparison | Membership | PatternMatch | IsTest,
           ops: Collection[str], value_type: type) -> None:
    """Refuse a family built with another family's operator or value shape."""
    if condition.op not in ops:
        raise ValueError(f"{type(condition).__name__} takes {', '.join(ops)}, "
                         f"not {condition.op!r}")
    if not isinstance(condition.value, value_type):
        raise ValueError(f"{type(condition).__name__} takes a {value_type.__name__} value, "
                         f"not {condition.value!r}")


_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_IDENTIFIER = re.compile(r"[^\W\d][\w$]*")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def parse_conditions(text: str) -> tuple[Condition, ...]:
    """The conditions of a non-empty filter text; raises ``Invalid`` saying what is wrong.

    >>> parse_conditions('"my col"=like.*x*')
    (PatternMatch(column='my col', op='like', value='*x*', negate=False),)
    >>> parse_conditions("a=is.NULL,b=eq.{1,2}")
    (IsTest(column='a', op='is', value='null', negate=False), \
Comparison(column='b', op='eq', value='{1,2}', negate=False))
    """
    return tuple(_parse_condition(part) for part in split(text))


def split(text: str) -> list[str]:
    """``text`` cut at the commas outside quotes and brackets.

    >>> split('a=eq."x,y",b=in.(1,2),c=eq.{3,4}')
    ['a=eq."x,y"', 'b=in.(1,2)', 'c=eq.{3,4}']
    """
    parts: list[str] = []
    open_brackets: list[str] = []
    start = i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = _QUOTED.match(text, i)
            if quoted is None:
                raise Invalid("unterminated double quote")
            i = quoted.end()
            continue
        if ch in _CLOSERS:
            open_brackets.append(ch)
        elif ch in ")]}":
            if not open_brackets or _CLOSERS[open_brackets.pop()] != ch:
                raise Invalid(f'unbalanced "{ch}"; quote values that contain brackets')
        elif ch == "," and not open_brackets:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if open_brackets:
        raise Invalid(f'unbalanced "{open_brackets[-1]}"; quote values that contain brackets')
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> str:
    """The content of a value that is exactly one double-quoted token."""
    quoted = _QUOTED.match(text)
    if quoted is None:
        raise Invalid("unterminated double quote")
    if quoted.end() != len(text):
        raise Invalid(f'unexpected text after closing quote: "{shown(text[quoted.end():])}"')
    return _ESCAPED.sub(r"\1", quoted[1])


def _scalar(raw: str) -> str:
    """A single value: trimmed, and unquoted when it is quoted.

    >>> _scalar('  raw  '), _scalar(r'" say \\"hi\\" "')
    ('raw', ' say "hi" ')
    """
    value = raw.strip()
    return _unquote(value) if value.startswith('"') else value


def _parse_condition(part: str) -> Condition:
    part = part.strip()
    if not part:
        raise Invalid('empty condition; expected "column=operator.value"')
    column, rest = _parse_column(part)
    negate = rest.startswith("not.")
    if negate:
        rest = rest[len("not."):]
    op, dot, value = rest.partition(".")
    if op not in OPERATORS:
        if not op:
            raise Invalid('missing operator after "not."' if negate else "missing operator")
        if op == "not":
            raise Invalid('"not." can appear only once' if negate
                          else '"not" must be followed by "." and an operator')
        raise Invalid(f'unknown operator "{shown(op)}"')
    if not dot:
        raise Invalid(f'missing "." and a value after operator "{op}"')

    if op == "in":
        return Membership(column, "in", _parse_list(value), negate)
    scalar = _scalar(value)
    if op == "is":
        word = _IS_WORDS.get(scalar.lower())
        if word is None:
            raise Invalid(f'"is" accepts null, true, false or unknown, not "{shown(scalar)}"')
        return IsTest(column, "is", word, negate)
    pattern_op = _PATTERN_OPS.get(op)
    if pattern_op is not None:
        # Pattern errors belong to parsing, before any column type is known.
        matcher = like_matcher if pattern_op in ("like", "ilike") else regex_matcher
        matcher(scalar, ignore_case=False)
        return PatternMatch(column, pattern_op, scalar, negate)
    return Comparison(column, _COMPARISON_OPS[op], scalar, negate)


def _parse_column(part: str) -> tuple[str, str]:
    """The column name at the start of a condition, and the text after its ``=``."""
    if part.startswith('"'):
        quoted = _QUOTED.match(part)
        if quoted is None:
            raise Invalid("unterminated double quote in column name")
        if not part.startswith("=", quoted.end()):
            raise Invalid('expected "=" after the column name')
        column = _ESCAPED.sub(r"\1", quoted[1])
        rest = part[quoted.end() + 1:]
    else:
        column, equals, rest = part.partition("=")
        column = column.strip()
        if not equals:
            raise Invalid(f'expected "column=operator.value", got "{shown(part)}"')
        if column and not _IDENTIFIER.fullmatch(column):
            raise Invalid(f'invalid column name "{shown(column)}"; quote it in double quotes')
    if not column:
        raise Invalid("missing column name")
    return column, rest


def _parse_list(raw: str) -> tuple[str, ...]:
    value = raw.strip()
    if not (value.startswith("(") and value.endswith(")")):
        raise Invalid('"in" expects a list in parentheses, e.g. in.(1,2,3)')
    inner = value[1:-1]
    if not inner.strip():
        raise Invalid('"in" needs at least one value')
    items = split(inner)
    if len(items) > MAX_IN_VALUES:
        raise Invalid(f'"in" accepts at most {MAX_IN_VALUES} values')
    if any(not item.strip() for item in items):
        raise Invalid('empty value in "in" list; write "" for an empty string')
    return tuple(_scalar(item) for item in items)


_NEEDS_QUOTES = re.compile(r'[,()\[\]{}"\\]|^\s|\s$|^$')


def _quote(text: str) -> str:
    if not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(conditions: tuple[Condition, ...]) -> str:
    """Filter text that parses back to ``conditions``.

    >>> render((Condition("my col", "in", ("a,b", "c"), True), Condition("n", "gt", "1")))
    '"my col"=not.in.("a,b",c),n=gt.1'
    """
    return ",".join(_render(c) for c in conditions)


def _render(condition: Condition) -> str:
    column = condition.column
    if not _IDENTIFIER.fullmatch(column):
        column = '"' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'
    match condition:
        case Membership(value=values):
            value = "(" + ",".join(_quote(v) for v in values) + ")"
        case IsTest(value=word):
            value = word
        case Comparison(value=text) | PatternMatch(value=text):
            value = _quote(text)
        case _:
            raise TypeError(f"not a filter condition: {condition!r}")
    return f"{column}={'not.' if condition.negate else ''}{condition.op}.{value}"
