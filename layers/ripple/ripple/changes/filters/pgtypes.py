"""Postgres scalar types as a filter sees them: numbers, booleans, text, uuids.

Each type is a ``ColumnType``: two readers, one for the filter's text and one for a value of
``to_jsonb(row)``, that return a comparison key (equal keys iff Postgres calls the values
equal, ordered as Postgres orders them), and a ``canon`` that renders a key as the text an
equality index stores. Dates and times live in ``temporal``, json and arrays in
``documents``; ``columns.column_type`` picks the type for a ``typname``.

>>> numeric = numeric_type("numeric")
>>> numeric.from_text("1.50") == numeric.from_json(1.5)
True
>>> numeric.canon(numeric.from_text("1.50"))
'1.5'
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ripple.changes.filters.exceptions import range_error, syntax_error

Kind = Literal["number", "bool", "text", "uuid", "temporal", "json", "array"]


@dataclass(frozen=True)
class ColumnType:
    """How to read one Postgres type from filter text and from ``to_jsonb`` values.

    Both readers return a comparison key and raise ``Invalid``; ``canon`` renders a key as
    the canonical index text, or is None when the type has no safe canonical form.
    ``fold_case`` says the type's own operators ignore case (citext).
    """

    name: str
    kind: Kind
    from_text: Callable[[str], Any]
    from_json: Callable[[Any], Any]
    canon: Callable[[Any], str] | None = None
    fold_case: bool = False


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_INT_LIMITS = {"int2": 2**15, "int4": 2**31, "int8": 2**63}


def int_type(name: str) -> ColumnType:
    """``int2``, ``int4`` or ``int8``: Python ints, range-checked as Postgres does.

    >>> int8 = int_type("int8")
    >>> int8.from_text(" +042 "), int8.from_json(42)
    (42, 42)
    >>> int_type("int2").from_text("40000")
    Traceback (most recent call last):
      ...
    ripple.changes.filters.exceptions.Invalid: value "40000" is out of range for type int2
    """
    limit = _INT_LIMITS[name]

    def checked(number: int, shown: Any) -> int:
        if not -limit <= number < limit:
            raise range_error(name, shown)
        return number

    def from_text(text: str) -> int:
        value = text.strip()
        if not _INT_TEXT.fullmatch(value):
            raise syntax_error(name, text)
        if len(value.lstrip("+-").lstrip("0")) > 19:  # also keeps int() under its digit limit
            raise range_error(name, value)
        return checked(int(value), value)

    def from_json(value: Any) -> int:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return checked(value, value)
        raise syntax_error(name, value)

    return ColumnType(name, "number", from_text, from_json, str)


_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {"nan": math.nan, "infinity": math.inf, "+infinity": math.inf,
                "-infinity": -math.inf, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def float_type(name: str) -> ColumnType:
    """``float4`` or ``float8``; float4 values are rounded to single precision first.

    >>> float4 = float_type("float4")
    >>> float4.from_text("0.1") == float4.from_json(0.10000000149)
    True
    >>> float4.canon(float4.from_text("NaN")), float4.from_text("NaN") > float4.from_text("inf")
    ('NaN', True)
    """
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
            raise range_error(name, shown)
        # NaN equals itself and sorts above everything in Postgres; -0 equals 0.
        return (1, 0.0) if stored != stored else (0, stored + 0.0)

    def from_text(text: str) -> tuple[int, float]:
        value = text.strip()
        word = _FLOAT_WORDS.get(value.lower())
        if word is not None:
            return key(word, value)
        if not _NUMBER_TEXT.fullmatch(value):
            raise syntax_error(name, text)
        number = float(value)
        mantissa = value.lower().partition("e")[0]
        if math.isinf(number) or (number == 0 and mantissa.strip("+-.0")):
            raise range_error(name, value)
        return key(number, value)

    def from_json(value: Any) -> tuple[int, float]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise range_error(name, value) from None
            return key(number, value)
        raise syntax_error(name, value)

    def canon(k: tuple[int, float]) -> str:
        if k[0]:
            return "NaN"
        if math.isinf(k[1]):
            return "Infinity" if k[1] > 0 else "-Infinity"
        return repr(k[1])

    return ColumnType(name, "number", from_text, from_json, canon)


_NUMERIC_WORDS = {"nan": Decimal("NaN"), "infinity": Decimal("Infinity"),
                  "+infinity": Decimal("Infinity"), "-infinity": Decimal("-Infinity"),
                  "inf": Decimal("Infinity"), "+inf": Decimal("Infinity"),
                  "-inf": Decimal("-Infinity")}
# Postgres numeric holds up to 131072 digits before the point and 16383 after.
_NUMERIC_MAX_ADJUSTED = 131071
_NUMERIC_MIN_EXPONENT = -16383


def numeric_type(name: str) -> ColumnType:
    """``numeric``: exact ``Decimal`` keys; NaN equals NaN and sorts last, as in Postgres.

    >>> numeric = numeric_type("numeric")
    >>> numeric.from_text("10.2499999999999999999999999") < numeric.from_json(10.25)
    True
    """
    def key(number: Decimal, shown: Any) -> tuple[int, Decimal]:
        if number.is_nan():
            return (1, Decimal(0))
        exponent = number.as_tuple().exponent
        if number.is_finite() and number and isinstance(exponent, int) and (
            number.adjusted() > _NUMERIC_MAX_ADJUSTED or exponent < _NUMERIC_MIN_EXPONENT
        ):
            raise range_error(name, shown)
        return (0, number)

    def from_text(text: str) -> tuple[int, Decimal]:
        value = text.strip()
        word = _NUMERIC_WORDS.get(value.lower())
        if word is not None:
            return key(word, value)
        if not _NUMBER_TEXT.fullmatch(value):
            raise syntax_error(name, text)
        try:
            number = Decimal(value)
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            raise range_error(name, value) from None
        return key(number, value)

    def from_json(value: Any) -> tuple[int, Decimal]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, bool):
            raise syntax_error(name, value)
        if isinstance(value, int):
            return key(Decimal(value), value)
        if isinstance(value, float) and math.isfinite(value):
            return key(Decimal(repr(value)), value)  # the shortest text that reads back
        if isinstance(value, Decimal):
            return key(value, value)
        raise syntax_error(name, value)

    return ColumnType(name, "number", from_text, from_json, numeric_text)


def numeric_text(k: tuple[int, Decimal]) -> str:
    """A numeric key as text without trailing zeros; plain unless the exponent is extreme.

    >>> numeric_text((0, Decimal("1.500"))), numeric_text((0, Decimal("1E+70")))
    ('1.5', '1E+70')
    """
    if k[0]:
        return "NaN"
    number = k[1]
    if number.is_infinite():
        return "Infinity" if number > 0 else "-Infinity"
    if not number:
        return "0"
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: NaN and infinities returned above
    # Strip trailing zeros exactly; Decimal.normalize() would round to the context precision.
    while digits[-1] == 0:
        digits = digits[:-1]
        exponent += 1
    number = Decimal((sign, digits, exponent))
    return format(number, "f") if -64 <= number.adjusted() <= 64 else str(number)


_TRUE_WORDS = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "fa", "fal", "fals", "false", "n", "no", "off", "0"})


def bool_type(name: str) -> ColumnType:
    """``bool``, reading every spelling Postgres accepts (``t``, ``yes``, ``on``, ``1`` ...).

    >>> boolean = bool_type("bool")
    >>> boolean.from_text(" YES "), boolean.from_json(False), boolean.canon(True)
    (True, False, 'true')
    """
    def from_text(text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise syntax_error(name, text)

    def from_json(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return from_text(value)
        raise syntax_error(name, value)

    return ColumnType(name, "bool", from_text, from_json, lambda k: "true" if k else "false")


def text_type(name: str) -> ColumnType:
    """Text and any type this package does not know (enums, domains): compared as text.

    ``citext`` ignores case and ``bpchar`` (``char(n)``) trailing spaces, as their own
    operators do.

    >>> text_type("citext").from_text("MixedCase"), text_type("bpchar").from_text("ab  ")
    ('mixedcase', 'ab')
    >>> text_type("positive_int").from_json(5)
    '5'
    """
    fold = name == "citext"
    padded = name == "bpchar"

    def from_text(text: str) -> str:
        if padded:
            text = text.rstrip(" ")
        return text.lower() if fold else text

    def from_json(value: Any) -> str:
        if isinstance(value, str):
            return from_text(value)
        # Domains and enums over non-text types arrive as JSON numbers, booleans, objects.
        return from_text(json.dumps(value, ensure_ascii=False, default=str))

    return ColumnType(name, "text", from_text, from_json, lambda k: k, fold_case=fold)


_UUID_TEXT = re.compile(
    r"\s*(?:\{(?P<braced>[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7})\}"
    r"|(?P<plain>[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}))\s*"
)


def uuid_type(name: str) -> ColumnType:
    """``uuid`` in any spelling Postgres reads; keys are lower-case hyphenated text.

    >>> uuid_type("uuid").from_text("{A0EEBC999C0B4EF8BB6D6BB9BD380A11}")
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'
    """
    def from_text(text: str) -> str:
        found = _UUID_TEXT.fullmatch(text)
        if found is None:
            raise syntax_error(name, text)
        hexa = (found["braced"] or found["plain"]).replace("-", "").lower()
        # Lower-case hyphenated text orders like Postgres' bytewise uuid comparison.
        return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"

    def from_json(value: Any) -> str:
        if isinstance(value, str):
            return from_text(value)
        raise syntax_error(name, value)

    return ColumnType(name, "uuid", from_text, from_json, lambda k: k)
