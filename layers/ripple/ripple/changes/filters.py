"""Filters of ``postgres_changes`` bindings: parse, validate, evaluate, index.

A binding's ``filter`` is the PostgREST-style string that realtime-js and realtime-py pass
through unchanged::

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

Evaluation follows SQL as Postgres would run ``column <op> 'value'::column_type``:

- both sides are read as the column's type (``pg_type.typname``, as in the ``columns``
  payload) before comparing: integers, floats, ``Decimal`` for numeric, booleans, dates and
  times, uuids, text; unknown types (enums, domains) compare as text;
- NULL makes every comparison UNKNOWN, ``not.`` keeps UNKNOWN, and a binding matches only
  when every condition is TRUE; ``is`` and ``isdistinct`` are NULL-safe; ``eq.null`` compares
  with the text ``'null'``, as PostgREST does; a column missing from the record (an unchanged
  TOAST value) is UNKNOWN;
- json/jsonb columns support equality (``eq neq in isdistinct``) against the value parsed
  as JSON; array columns (``_int4``, ``_text`` ...) support it against a Postgres array
  literal such as ``{1,2}``;
- ``like ilike match imatch`` apply to text-like columns only (Postgres has no such operator
  for numbers, dates or uuids); on ``citext`` they ignore case, as citext's operators do.

Where this differs from a Postgres server, deliberately:

- text ordering (``lt`` ... ``gte``) is by code point, like the ``C`` collation, not a
  linguistic collation; enums order as text, not by declaration;
- a timestamptz or timetz value without an offset is read as UTC (Postgres would use the
  session's TimeZone); years outside 1..9999 are not supported;
- ``match``/``imatch`` run on RE2 (linear time, like Postgres' automaton engine, so no pattern
  can stall the fanout). Lookahead/lookbehind constraints and back-references are refused;
  ``\\m``/``\\M`` read as ``\\b``. POSIX classes such as ``[[:alpha:]]`` are ASCII;
- ``to_jsonb(row)`` renders SQL NULL and a jsonb ``null`` the same way; both read as NULL.

Typical use::

    types = {"amount": "numeric", "status": "text"}
    flt = parse_filter("amount=gt.100,status=in.(open,pending)")
    flt.validate(types)                                     # at join; FilterError if unusable
    flt.matches({"amount": 150, "status": "open"}, types)   # per change -> True
    flt.eq_key(types)                                       # -> None: no eq to index on
"""

from __future__ import annotations

import json
import math
import operator
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import re2

OPERATORS = frozenset(
    {"eq", "neq", "lt", "lte", "gt", "gte", "in", "like", "ilike", "is", "match", "imatch",
     "isdistinct"}
)
IS_VALUES = ("null", "true", "false", "unknown")
MAX_IN_VALUES = 100


class FilterError(ValueError):
    """A filter that cannot be parsed or cannot apply to the table; ``str(e)`` says why."""


@dataclass(frozen=True)
class Condition:
    """One ``column=[not.]op.value`` term; ``value`` is unquoted text, a tuple for ``in``."""

    column: str
    op: str
    value: str | tuple[str, ...] | None
    negate: bool = False


@dataclass(frozen=True)
class Filter:
    """The AND of its conditions; ``Filter(())`` matches every change."""

    conditions: tuple[Condition, ...]
    text: str = field(default="", compare=False)
    # Predicates compiled per column types, shared by every binding holding this instance.
    _compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __str__(self) -> str:
        """The filter text as given, or a canonical rendering that parses back to it."""
        return self.text or ",".join(_render(c) for c in self.conditions)

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

    def matches(self, record: Mapping[str, Any], types: Mapping[str, str]) -> bool:
        """True when every condition is TRUE for ``record`` (a ``to_jsonb(row)`` object).

        A filter that does not validate against ``types`` (the column was dropped or changed
        type since the join) matches nothing instead of raising, so one stale binding cannot
        break the fanout of a change; ``validate`` reports why.
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
        """
        for condition in self.conditions:
            if condition.op != "eq" or condition.negate or condition.column not in types:
                continue
            column_type = _column_type(types[condition.column])
            if column_type.canon is None:
                continue
            try:
                key = column_type.from_text(condition.value)
            except _Invalid as e:
                raise FilterError(self._message(e.reason)) from None
            return condition.column, column_type.canon(key)
        return None

    def _compile(self, types: Mapping[str, str]) -> tuple[Callable, ...] | str:
        """The condition predicates for these column types, or the error message."""
        signature = tuple(types.get(c.column) for c in self.conditions)
        compiled = self._compiled.get(signature)
        if compiled is None:
            try:
                compiled = tuple(_predicate(c, types) for c in self.conditions)
            except _Invalid as e:
                compiled = self._message(e.reason)
            self._compiled[signature] = compiled
        return compiled

    def _message(self, reason: str) -> str:
        return _message(str(self), reason)


_MATCH_ALL = Filter(())


@lru_cache(maxsize=4096)
def parse_filter(text: str | None) -> Filter:
    """The ``Filter`` for a binding's filter string; ``None`` or ``""`` matches everything.

    Raises ``FilterError`` for malformed text. Results are cached and shared, so callers
    must treat them as immutable (they are frozen).

    >>> parse_filter('status=not.in.(draft,"a,b")').conditions
    (Condition(column='status', op='in', value=('draft', 'a,b'), negate=True),)
    """
    if text is None or text == "":
        return _MATCH_ALL
    if not isinstance(text, str):
        raise FilterError(f"invalid filter {text!r}: a filter must be a string")
    try:
        conditions = tuple(_parse_condition(part) for part in _split(text))
    except _Invalid as e:
        raise FilterError(_message(text, e.reason)) from None
    return Filter(conditions, text)


_SHOWN_FILTER_CHARS = 200
_SHOWN_VALUE_CHARS = 100


def _message(text: str, reason: str) -> str:
    """The error text for a filter; a very long filter is shortened, the reason never is."""
    if len(text) > _SHOWN_FILTER_CHARS:
        text = text[:_SHOWN_FILTER_CHARS] + "..."
    return f'invalid filter "{text}": {reason}'


def _shown(value: Any) -> str:
    """A user value as quoted in a message, shortened so errors stay readable."""
    text = str(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "..."


def canonical(value: Any, pg_type: str) -> str | None:
    """The text that equal values of ``pg_type`` share, for an equality index; else None.

    ``value`` is filter text (a ``str``) or a value from ``to_jsonb(row)``; both sides of an
    equality land on the same string: ``canonical("1.50", "numeric") == canonical(1.5,
    "numeric") == "1.5"``. SQL NULL and types without a safe canonical form (json, jsonb,
    arrays) give None. Raises ``FilterError`` when ``value`` cannot be read as ``pg_type``.
    """
    if value is None:
        return None
    column_type = _column_type(pg_type)
    if column_type.canon is None:
        return None
    try:
        if isinstance(value, str):
            key = column_type.from_text(value)
        else:
            key = column_type.from_json(value)
    except _Invalid as e:
        raise FilterError(e.reason) from None
    return column_type.canon(key)


# --- parsing -----------------------------------------------------------------------------

class _Invalid(Exception):
    """Internal: why a filter or value is invalid; turned into ``FilterError`` at the API."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_IDENTIFIER = re.compile(r"[^\W\d][\w$]*")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _split(text: str) -> list[str]:
    """``text`` cut at the commas outside quotes and brackets."""
    parts: list[str] = []
    open_brackets: list[str] = []
    start = i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = _QUOTED.match(text, i)
            if quoted is None:
                raise _Invalid("unterminated double quote")
            i = quoted.end()
            continue
        if ch in _CLOSERS:
            open_brackets.append(ch)
        elif ch in ")]}":
            if not open_brackets or _CLOSERS[open_brackets.pop()] != ch:
                raise _Invalid(f'unbalanced "{ch}"; quote values that contain brackets')
        elif ch == "," and not open_brackets:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if open_brackets:
        raise _Invalid(f'unbalanced "{open_brackets[-1]}"; quote values that contain brackets')
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> str:
    """The content of a value that is exactly one double-quoted token."""
    quoted = _QUOTED.match(text)
    if quoted is None:
        raise _Invalid("unterminated double quote")
    if quoted.end() != len(text):
        raise _Invalid(f'unexpected text after closing quote: "{_shown(text[quoted.end():])}"')
    return _ESCAPED.sub(r"\1", quoted[1])


def _scalar(raw: str) -> str:
    value = raw.strip()
    return _unquote(value) if value.startswith('"') else value


def _parse_condition(part: str) -> Condition:
    part = part.strip()
    if not part:
        raise _Invalid('empty condition; expected "column=operator.value"')
    if part.startswith('"'):
        quoted = _QUOTED.match(part)
        if quoted is None:
            raise _Invalid("unterminated double quote in column name")
        if not part.startswith("=", quoted.end()):
            raise _Invalid('expected "=" after the column name')
        column = _ESCAPED.sub(r"\1", quoted[1])
        rest = part[quoted.end() + 1:]
    else:
        column, equals, rest = part.partition("=")
        column = column.strip()
        if not equals:
            raise _Invalid(f'expected "column=operator.value", got "{_shown(part)}"')
        if column and not _IDENTIFIER.fullmatch(column):
            raise _Invalid(f'invalid column name "{_shown(column)}"; quote it in double quotes')
    if not column:
        raise _Invalid("missing column name")

    negate = rest.startswith("not.")
    if negate:
        rest = rest[len("not."):]
    op, dot, value = rest.partition(".")
    if op not in OPERATORS:
        if not op:
            raise _Invalid('missing operator after "not."' if negate else "missing operator")
        if op == "not":
            raise _Invalid('"not." can appear only once' if negate
                           else '"not" must be followed by "." and an operator')
        raise _Invalid(f'unknown operator "{_shown(op)}"')
    if not dot:
        raise _Invalid(f'missing "." and a value after operator "{op}"')

    if op == "in":
        return Condition(column, op, _parse_list(value), negate)
    scalar = _scalar(value)
    if op == "is":
        if scalar.lower() not in IS_VALUES:
            raise _Invalid(f'"is" accepts null, true, false or unknown, not "{_shown(scalar)}"')
        scalar = scalar.lower()
    elif op in ("like", "ilike"):
        _like_matcher(scalar, ignore_case=False)  # pattern errors belong to parsing
    elif op in ("match", "imatch"):
        _posix_regex(scalar, ignore_case=False)
    return Condition(column, op, scalar, negate)


def _parse_list(raw: str) -> tuple[str, ...]:
    value = raw.strip()
    if not (value.startswith("(") and value.endswith(")")):
        raise _Invalid('"in" expects a list in parentheses, e.g. in.(1,2,3)')
    inner = value[1:-1]
    if not inner.strip():
        raise _Invalid('"in" needs at least one value')
    items = _split(inner)
    if len(items) > MAX_IN_VALUES:
        raise _Invalid(f'"in" accepts at most {MAX_IN_VALUES} values')
    if any(not item.strip() for item in items):
        raise _Invalid('empty value in "in" list; write "" for an empty string')
    return tuple(_scalar(item) for item in items)


_NEEDS_QUOTES = re.compile(r'[,()\[\]{}"\\]|^\s|\s$|^$')


def _quote(text: str) -> str:
    if not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(condition: Condition) -> str:
    column = condition.column
    if not _IDENTIFIER.fullmatch(column):
        column = '"' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if condition.op == "in":
        value = "(" + ",".join(_quote(v) for v in condition.value) + ")"
    elif condition.op == "is":
        value = condition.value
    else:
        value = _quote(condition.value or "")
    return f"{column}={'not.' if condition.negate else ''}{condition.op}.{value}"


# --- patterns ------------------------------------------------------------------------------

def _like_matcher(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    """A LIKE test for ``pattern`` (``%``/``*`` any run, ``_`` one char, ``\\`` escapes).

    The pattern is cut at its wildcards into fixed-length pieces matched left to right, so a
    test is linear in the text rather than backtracking over every ``%``.
    """
    pieces: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                raise _Invalid("LIKE pattern must not end with escape character")
            pieces[-1].append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch in "%*":
            if pieces[-1] or len(pieces) == 1:  # a run of wildcards is one wildcard
                pieces.append([])
        else:
            pieces[-1].append("." if ch == "_" else re.escape(ch))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    compiled = [(re.compile("".join(p), flags), len(p)) for p in pieces]
    if len(compiled) == 1:
        whole = compiled[0][0]
        return lambda text: whole.fullmatch(text) is not None

    (head, head_len), *middle, (tail, tail_len) = compiled

    def matches(text: str) -> bool:
        end = len(text) - tail_len
        if end < head_len or head.match(text) is None:
            return False
        position = head_len
        for piece, _ in middle:
            found = piece.search(text, position, end)
            if found is None:
                return False
            position = found.end()
        return tail.fullmatch(text, end) is not None

    return matches


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "\\x21-\\x7e", "lower": "a-z", "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~", "space": "\\s", "upper": "A-Z", "xdigit": "0-9A-Fa-f",
    "word": "\\w",
}
# Postgres ARE escapes whose RE2 spelling differs (\b is backspace, \B a backslash there).
# RE2 has no lookaround, so word-start/word-end (\m, \M) widen to a word boundary.
_ARE_ESCAPES = {
    "m": r"\b", "M": r"\b", "y": r"\b", "Y": r"\B", "B": r"\\", "b": r"\x08",
}
_BOUND = re.compile(r"\{(\d+)(,(\d*))?\}")
_REGEX_GROUP_PREFIXES = ("(?:",)
_MAX_BOUND = 255  # Postgres' RE_DUP_MAX


def _posix_regex(pattern: str, ignore_case: bool):
    """``pattern`` (a Postgres ``~`` regex) compiled by RE2 for ``search``; raises ``_Invalid``."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                raise _Invalid("invalid regular expression: trailing backslash")
            escape = pattern[i + 1]
            out.append(_ARE_ESCAPES.get(escape, "\\" + escape))
            i += 2
        elif ch == "[":
            bracket, i = _posix_bracket(pattern, i)
            out.append(bracket)
        elif ch == "(":
            prefix = next((p for p in _REGEX_GROUP_PREFIXES if pattern.startswith(p, i)), "(")
            if prefix == "(" and pattern.startswith("(?", i):
                raise _Invalid('invalid regular expression: lookaround and "(?" constructs '
                               'are not supported')
            depth += 1
            out.append(prefix)
            i += len(prefix)
        elif ch == ")":
            if depth == 0:
                raise _Invalid('invalid regular expression: unmatched ")"')
            depth -= 1
            out.append(")")
            i += 1
        elif ch in "*+?" or (ch == "{" and _BOUND.match(pattern, i)):
            if ch == "{":
                bound = _BOUND.match(pattern, i)
                low = int(bound[1])
                high = low if bound[2] is None else (int(bound[3]) if bound[3] else None)
                if low > _MAX_BOUND or (high is not None and (high > _MAX_BOUND or high < low)):
                    raise _Invalid("invalid regular expression: invalid repetition count(s)")
                token, i = bound[0], bound.end()
            else:
                token, i = ch, i + 1
            if pattern.startswith("?", i):  # lazy modifier, not another quantifier
                token += "?"
                i += 1
            out.append(token)
        elif ch == "{":
            out.append(r"\{")
            i += 1
        elif ch == "$":
            out.append(r"\z")  # ARE's $ is end of string only, not also before a final \n
            i += 1
        else:
            out.append(ch)
            i += 1
    options = re2.Options()
    options.log_errors = False
    options.dot_nl = True
    options.case_sensitive = not ignore_case
    try:
        return re2.compile("".join(out), options)
    except (re2.error, ValueError) as e:
        detail = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise _Invalid(f"invalid regular expression: {detail}") from None


def _posix_bracket(pattern: str, start: int) -> tuple[str, int]:
    """The Python set for the bracket expression at ``start`` and the index after it."""
    parts = ["["]
    i = start + 1
    if pattern.startswith("^", i):
        parts.append("^")
        i += 1
    if pattern.startswith("]", i):
        parts.append(r"\]")
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        ch = pattern[i]
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2:end] if end >= 0 else ""
            if name not in _POSIX_CLASSES:
                raise _Invalid(f'invalid regular expression: unknown class "[:{name}:]"')
            parts.append(_POSIX_CLASSES[name])
            i = end + 2
        elif pattern.startswith(("[.", "[="), i):
            raise _Invalid("invalid regular expression: collating elements are not supported")
        elif ch == "\\":
            if i + 1 == len(pattern):
                raise _Invalid("invalid regular expression: trailing backslash")
            parts.append(pattern[i:i + 2])
            i += 2
        else:
            # Characters Python reserves for future set operations are escaped to stay literal.
            parts.append("\\" + ch if ch in "[&~|" else ch)
            i += 1
    if i >= len(pattern):
        raise _Invalid('invalid regular expression: unterminated "["')
    parts.append("]")
    return "".join(parts), i + 1


# --- column types --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Type:
    """How to read one Postgres type from filter text and from ``to_jsonb`` values.

    Both readers return a comparison key (equal keys iff Postgres calls the values equal,
    ordered like Postgres orders them) and raise ``_Invalid``; ``canon`` renders a key as
    the canonical index text, or is None when the type has no safe canonical form.
    """

    name: str
    kind: str  # number | bool | text | uuid | temporal | json | array
    from_text: Callable[[str], Any]
    from_json: Callable[[Any], Any]
    canon: Callable[[Any], str] | None = None
    fold_case: bool = False


def _syntax_error(name: str, value: Any) -> _Invalid:
    return _Invalid(f'invalid input syntax for type {name}: "{_shown(value)}"')


def _range_error(name: str, value: Any) -> _Invalid:
    return _Invalid(f'value "{_shown(value)}" is out of range for type {name}')


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_INT_LIMITS = {"int2": 2**15, "int4": 2**31, "int8": 2**63}


def _int_type(name: str) -> _Type:
    limit = _INT_LIMITS[name]

    def checked(number: int, shown: Any) -> int:
        if not -limit <= number < limit:
            raise _range_error(name, shown)
        return number

    def from_text(text: str) -> int:
        value = text.strip()
        if not _INT_TEXT.fullmatch(value):
            raise _syntax_error(name, text)
        if len(value.lstrip("+-").lstrip("0")) > 19:  # also keeps int() under its digit limit
            raise _range_error(name, value)
        return checked(int(value), value)

    def from_json(value: Any) -> int:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return checked(value, value)
        raise _syntax_error(name, value)

    return _Type(name, "number", from_text, from_json, str)


_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {"nan": math.nan, "infinity": math.inf, "+infinity": math.inf,
                "-infinity": -math.inf, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _float_type(name: str) -> _Type:
    single = name == "float4"

    def key(number: float, shown: Any) -> tuple[int, float]:
        stored = number
        if single:  # round to float4 as Postgres stores it, so equality agrees with Postgres
            try:
                stored = struct.unpack("f", struct.pack("f", number))[0]
            except OverflowError:
                stored = math.inf
        # Like Postgres, refuse a finite value that overflows or a non-zero one that underflows.
        if (math.isinf(stored) and not math.isinf(number)) or (stored == 0 and number != 0):
            raise _range_error(name, shown)
        # NaN equals itself and sorts above everything in Postgres; -0 equals 0.
        return (1, 0.0) if stored != stored else (0, stored + 0.0)

    def from_text(text: str) -> tuple[int, float]:
        value = text.strip()
        word = _FLOAT_WORDS.get(value.lower())
        if word is not None:
            return key(word, value)
        if not _NUMBER_TEXT.fullmatch(value):
            raise _syntax_error(name, text)
        number = float(value)
        mantissa = value.lower().partition("e")[0]
        if math.isinf(number) or (number == 0 and mantissa.strip("+-.0")):
            raise _range_error(name, value)
        return key(number, value)

    def from_json(value: Any) -> tuple[int, float]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise _range_error(name, value) from None
            return key(number, value)
        raise _syntax_error(name, value)

    def canon(k: tuple[int, float]) -> str:
        if k[0]:
            return "NaN"
        if math.isinf(k[1]):
            return "Infinity" if k[1] > 0 else "-Infinity"
        return repr(k[1])

    return _Type(name, "number", from_text, from_json, canon)


_NUMERIC_WORDS = {"nan": Decimal("NaN"), "infinity": Decimal("Infinity"),
                  "+infinity": Decimal("Infinity"), "-infinity": Decimal("-Infinity"),
                  "inf": Decimal("Infinity"), "+inf": Decimal("Infinity"),
                  "-inf": Decimal("-Infinity")}
# Postgres numeric holds up to 131072 digits before the point and 16383 after.
_NUMERIC_MAX_ADJUSTED = 131071
_NUMERIC_MIN_EXPONENT = -16383


def _numeric_type(name: str) -> _Type:
    def key(number: Decimal, shown: Any) -> tuple[int, Decimal]:
        if number.is_nan():
            return (1, Decimal(0))  # NaN equals NaN and sorts last, as in Postgres
        if number.is_finite() and number and (
            number.adjusted() > _NUMERIC_MAX_ADJUSTED
            or number.as_tuple().exponent < _NUMERIC_MIN_EXPONENT
        ):
            raise _range_error(name, shown)
        return (0, number)

    def from_text(text: str) -> tuple[int, Decimal]:
        value = text.strip()
        word = _NUMERIC_WORDS.get(value.lower())
        if word is not None:
            return key(word, value)
        if not _NUMBER_TEXT.fullmatch(value):
            raise _syntax_error(name, text)
        try:
            number = Decimal(value)
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            raise _range_error(name, value) from None
        return key(number, value)

    def from_json(value: Any) -> tuple[int, Decimal]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, bool):
            raise _syntax_error(name, value)
        if isinstance(value, int):
            return key(Decimal(value), value)
        if isinstance(value, float) and math.isfinite(value):
            return key(Decimal(repr(value)), value)  # the shortest text that reads back
        if isinstance(value, Decimal):
            return key(value, value)
        raise _syntax_error(name, value)

    return _Type(name, "number", from_text, from_json, _numeric_text)


def _numeric_text(k: tuple[int, Decimal]) -> str:
    """Decimal without trailing zeros; plain notation unless the exponent is extreme."""
    if k[0]:
        return "NaN"
    number = k[1]
    if number.is_infinite():
        return "Infinity" if number > 0 else "-Infinity"
    if not number:
        return "0"
    sign, digits, exponent = number.as_tuple()
    # Strip trailing zeros exactly; Decimal.normalize() would round to the context precision.
    while digits[-1] == 0:
        digits = digits[:-1]
        exponent += 1
    number = Decimal((sign, digits, exponent))
    return format(number, "f") if -64 <= number.adjusted() <= 64 else str(number)


_TRUE_WORDS = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "fa", "fal", "fals", "false", "n", "no", "off", "0"})


def _bool_type(name: str) -> _Type:
    def from_text(text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise _syntax_error(name, text)

    def from_json(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return from_text(value)
        raise _syntax_error(name, value)

    return _Type(name, "bool", from_text, from_json, lambda k: "true" if k else "false")


def _text_type(name: str) -> _Type:
    fold = name == "citext"
    padded = name == "bpchar"  # char(n): trailing spaces are insignificant

    def from_text(text: str) -> str:
        if padded:
            text = text.rstrip(" ")
        return text.lower() if fold else text

    def from_json(value: Any) -> str:
        if isinstance(value, str):
            return from_text(value)
        # Domains and enums over non-text types arrive as JSON numbers, booleans, objects.
        return from_text(json.dumps(value, ensure_ascii=False, default=str))

    return _Type(name, "text", from_text, from_json, lambda k: k, fold_case=fold)


_UUID_TEXT = re.compile(
    r"\s*(?:\{(?P<braced>[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7})\}"
    r"|(?P<plain>[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}))\s*"
)


def _uuid_type(name: str) -> _Type:
    def from_text(text: str) -> str:
        found = _UUID_TEXT.fullmatch(text)
        if found is None:
            raise _syntax_error(name, text)
        hexa = (found["braced"] or found["plain"]).replace("-", "").lower()
        # Lower-case hyphenated text orders like Postgres' bytewise uuid comparison.
        return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"

    def from_json(value: Any) -> str:
        if isinstance(value, str):
            return from_text(value)
        raise _syntax_error(name, value)

    return _Type(name, "uuid", from_text, from_json, lambda k: k)


# Read piece by piece (date, separator, time, zone) rather than with one pattern whose
# optional whitespace runs would backtrack polynomially on long inputs.
_DATE_PART = re.compile(r"([0-9]{4,})-([0-9]{1,2})-([0-9]{1,2})")
_TIME_PART = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]*))?)?")
_ZONE_PART = re.compile(r"[zZ]|UTC|([+-])([0-9]{1,2})(?::?([0-9]{2})(?::?([0-9]{2}))?)?")
_DAY_MICROS = 86_400_000_000
# Keys of timestamps and dates: -infinity < (0, value) < infinity.
_TIME_WORDS = {"infinity": (1, 0), "+infinity": (1, 0), "-infinity": (-1, 0)}


@dataclass(frozen=True)
class _Moment:
    day: date | None
    micros: int | None  # time of day in microseconds, 0..86_400_000_000
    offset: int | None  # seconds east of UTC


def _moment(text: str, name: str) -> _Moment:
    """The date, time of day and UTC offset written in ISO-like ``text``, each optional."""
    rest = text.strip()
    day_found = _DATE_PART.match(rest)
    needs_time = day_found is None
    if day_found:
        rest = rest[day_found.end():]
        if rest[:1] in ("T", "t"):
            rest, needs_time = rest[1:], True
        elif rest[:1].isspace():
            rest = rest.lstrip()
        elif rest:
            raise _syntax_error(name, text)
    time_found = _TIME_PART.match(rest)
    if time_found:
        rest = rest[time_found.end():].lstrip()
    elif needs_time:
        raise _syntax_error(name, text)
    zone_found = _ZONE_PART.fullmatch(rest)
    if rest and zone_found is None:
        raise _syntax_error(name, text)

    out_of_range = _Invalid(f'date/time field value out of range: "{_shown(text)}"')
    day = micros = offset = None
    if day_found:
        try:
            day = date(*(int(part) for part in day_found.groups()))
        except ValueError:
            raise out_of_range from None
    if time_found:
        hour, minute, second, fraction = time_found.groups()
        if int(minute) > 59 or int(second or 0) > 60:  # 60: a leap second rolls over
            raise out_of_range
        micros = (int(hour) * 3600 + int(minute) * 60 + int(second or 0)) * 1_000_000
        if fraction:  # Postgres keeps microseconds, rounding half to even
            micros += round(Decimal("0." + fraction) * 1_000_000)
        if micros > _DAY_MICROS:
            raise out_of_range
    if zone_found:
        sign, hours, minutes, seconds = zone_found.groups()
        offset = 0
        if sign:
            hours, minutes, seconds = int(hours), int(minutes or 0), int(seconds or 0)
            if hours > 15 or minutes > 59 or seconds > 59:
                raise _Invalid(f'time zone displacement out of range: "{_shown(text)}"')
            offset = (hours * 3600 + minutes * 60 + seconds) * (-1 if sign == "-" else 1)
    return _Moment(day, micros, offset)


def _clock(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def _zone(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    minutes, second = divmod(abs(offset), 60)
    hour, minute = divmod(minutes, 60)
    return f"{sign}{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _temporal_type(name: str) -> _Type:
    def from_text(text: str) -> Any:
        if name in ("timestamptz", "timestamp", "date"):
            word = text.strip().lower()
            if word in _TIME_WORDS:
                return _TIME_WORDS[word]
            if word == "epoch":
                text = "1970-01-01 00:00:00+00"
        moment = _moment(text, name)
        if name == "date":
            if moment.day is None:
                raise _syntax_error(name, text)
            return (0, moment.day)
        if name in ("time", "timetz"):
            if moment.micros is None:
                raise _syntax_error(name, text)
            if name == "time":
                return moment.micros
            # timetz: ordered by UTC instant, equal only when the zone is equal too.
            offset = moment.offset or 0
            return (moment.micros - offset * 1_000_000, -offset)
        if moment.day is None:
            raise _syntax_error(name, text)
        # timestamptz without an offset is read as UTC; timestamp ignores any offset.
        shift = (moment.micros or 0)
        zone = None
        if name == "timestamptz":
            shift -= (moment.offset or 0) * 1_000_000
            zone = UTC
        try:
            start = datetime(moment.day.year, moment.day.month, moment.day.day, tzinfo=zone)
            return (0, start + timedelta(microseconds=shift))
        except OverflowError:
            raise _Invalid(f'timestamp out of range: "{_shown(text)}"') from None

    def from_json(value: Any) -> Any:
        if isinstance(value, str):
            return from_text(value)
        raise _syntax_error(name, value)

    def canon(k: Any) -> str:
        if name == "time":
            return _clock(k)
        if name == "timetz":
            offset = -k[1]
            return _clock(k[0] + offset * 1_000_000) + _zone(offset)
        if k[0]:
            return "infinity" if k[0] > 0 else "-infinity"
        return k[1].isoformat()

    return _Type(name, "temporal", from_text, from_json, canon)


def _reject_constant(word: str) -> Any:
    raise ValueError(f"{word} is not valid JSON")


def _json_key(value: Any) -> Any:
    """A hashable key equal for JSON values jsonb calls equal (1 == 1.0, key order ignored)."""
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
        return ("array", tuple(_json_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _json_key(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def _json_type(name: str) -> _Type:
    def from_text(text: str) -> Any:
        try:
            value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
            return _json_key(value)
        except (ValueError, RecursionError):
            raise _syntax_error(name, text) from None

    def from_json(value: Any) -> Any:
        try:
            return _json_key(value)
        except (TypeError, RecursionError):
            raise _syntax_error(name, value) from None

    return _Type(name, "json", from_text, from_json)


_MAX_ARRAY_DIMENSIONS = 6  # Postgres' MAXDIM


def _array_literal(text: str, name: str) -> list:
    """The nested lists of element texts (None for NULL) in a literal like ``{1,"a b",NULL}``."""
    malformed = _Invalid(f'malformed array literal: "{_shown(text)}"')
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


def _array_type(name: str, element: _Type) -> _Type:
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
        return keys(_array_literal(text, name), element.from_text)

    def from_json(value: Any) -> tuple:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, list):
            return keys(value, element.from_json)
        raise _syntax_error(name, value)

    return _Type(name, "array", from_text, from_json)


_SCALAR_TYPES: dict[str, Callable[[str], _Type]] = {
    "int2": _int_type, "int4": _int_type, "int8": _int_type,
    "float4": _float_type, "float8": _float_type,
    "numeric": _numeric_type,
    "bool": _bool_type,
    "uuid": _uuid_type,
    "timestamptz": _temporal_type, "timestamp": _temporal_type, "date": _temporal_type,
    "time": _temporal_type, "timetz": _temporal_type,
    "json": _json_type, "jsonb": _json_type,
}


@lru_cache(maxsize=512)
def _column_type(pg_type: str) -> _Type:
    """The reader for a ``typname``; ``_x`` is an array of ``x``, anything unknown is text."""
    if pg_type.startswith("_") and len(pg_type) > 1:
        return _array_type(pg_type, _column_type(pg_type[1:]))
    return _SCALAR_TYPES.get(pg_type, _text_type)(pg_type)


# --- predicates ----------------------------------------------------------------------------
# A predicate maps a record to True, False or None (SQL UNKNOWN).

_ABSENT = object()
_COMPARISONS = {"eq": operator.eq, "neq": operator.ne, "lt": operator.lt,
                "lte": operator.le, "gt": operator.gt, "gte": operator.ge}
_EQUALITY_OPS = frozenset({"eq", "neq", "in", "isdistinct", "is"})


def _predicate(condition: Condition, types: Mapping[str, str]) -> Callable[[Mapping], Any]:
    pg_type = types.get(condition.column)
    if pg_type is None:
        raise _Invalid(f'column "{_shown(condition.column)}" does not exist')
    column_type = _column_type(pg_type)
    op = condition.op
    if column_type.kind in ("json", "array") and op not in _EQUALITY_OPS:
        raise _unsupported(condition, column_type)
    if op in ("like", "ilike", "match", "imatch") and column_type.kind != "text":
        raise _unsupported(condition, column_type)

    if op in _COMPARISONS:
        test = _compare(condition.column, column_type, _COMPARISONS[op],
                        column_type.from_text(condition.value))
    elif op == "in":
        wanted = frozenset(column_type.from_text(v) for v in condition.value)
        test = _compare(condition.column, column_type, lambda key, _: key in wanted, None)
    elif op == "isdistinct":
        test = _distinct(condition.column, column_type, column_type.from_text(condition.value))
    elif op == "is":
        if condition.value != "null" and column_type.kind != "bool":
            raise _Invalid(f'"is.{condition.value}" needs a bool column; '
                           f'"{condition.column}" is {column_type.name}')
        test = _is(condition.column, column_type, condition.value)
    else:
        ignore_case = op in ("ilike", "imatch") or column_type.fold_case
        if op in ("like", "ilike"):
            like = _like_matcher(condition.value, ignore_case)
            test = _compare(condition.column, column_type, lambda key, _: like(key), None)
        else:
            regex = _posix_regex(condition.value, ignore_case)
            test = _compare(condition.column, column_type,
                            lambda key, _: regex.search(key) is not None, None)
    return _negated(test) if condition.negate else test


def _unsupported(condition: Condition, column_type: _Type) -> _Invalid:
    return _Invalid(f'operator "{condition.op}" is not supported for column '
                    f'"{condition.column}" of type {column_type.name}')


def _compare(column: str, column_type: _Type, compare: Callable[[Any, Any], bool],
             wanted: Any) -> Callable[[Mapping], Any]:
    """``compare(record key, wanted)``, UNKNOWN when the value is NULL, absent or unreadable."""
    read = column_type.from_json

    def test(record: Mapping) -> Any:
        value = record.get(column, _ABSENT)
        if value is None or value is _ABSENT:
            return None
        try:
            return compare(read(value), wanted)
        except _Invalid:
            return None

    return test


def _distinct(column: str, column_type: _Type, wanted: Any) -> Callable[[Mapping], Any]:
    read = column_type.from_json

    def test(record: Mapping) -> Any:
        value = record.get(column, _ABSENT)
        if value is _ABSENT:
            return None
        if value is None:
            return True  # the filter value is never NULL
        try:
            return read(value) != wanted
        except _Invalid:
            return None

    return test


def _is(column: str, column_type: _Type, word: str) -> Callable[[Mapping], Any]:
    read = column_type.from_json

    def test(record: Mapping) -> Any:
        value = record.get(column, _ABSENT)
        if value is _ABSENT:
            return None
        if word in ("null", "unknown"):
            return value is None
        if value is None:
            return False
        try:
            return read(value) is (word == "true")
        except _Invalid:
            return None

    return test


def _negated(test: Callable[[Mapping], Any]) -> Callable[[Mapping], Any]:
    def negated(record: Mapping) -> Any:
        result = test(record)
        return None if result is None else not result

    return negated
