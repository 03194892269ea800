"""Postgres dates and times as a filter sees them: ``date``, ``time``, ``timetz``,
``timestamp`` and ``timestamptz``, read from ISO-like text.

A timestamptz or timetz value without an offset is read as UTC (Postgres would use the
session's TimeZone); years outside 1..9999 are not supported.

>>> tstz = temporal_type("timestamptz")
>>> tstz.from_text("2024-01-01 10:00:00+02") == tstz.from_json("2024-01-01T08:00:00Z")
True
>>> tstz.canon(tstz.from_text("2024-01-01 10:00+02"))
'2024-01-01T08:00:00+00:00'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ripple.changes.filters.exceptions import Invalid, shown, syntax_error
from ripple.changes.filters.pgtypes import ColumnType

# Read piece by piece (date, separator, time, zone) rather than with one pattern whose
# optional whitespace runs would backtrack polynomially on long inputs.
_DATE_PART = re.compile(r"([0-9]{4,})-([0-9]{1,2})-([0-9]{1,2})")
_TIME_PART = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]*))?)?")
_ZONE_PART = re.compile(r"[zZ]|UTC|([+-])([0-9]{1,2})(?::?([0-9]{2})(?::?([0-9]{2}))?)?")
_DAY_MICROS = 86_400_000_000
# Keys of timestamps and dates: -infinity < (0, value) < infinity.
_TIME_WORDS = {"infinity": (1, 0), "+infinity": (1, 0), "-infinity": (-1, 0)}


@dataclass(frozen=True)
class Moment:
    """The parts written in one date/time text; each is None when the text leaves it out."""

    day: date | None
    micros: int | None  # time of day in microseconds, 0..86_400_000_000
    offset: int | None  # seconds east of UTC


def moment(text: str, name: str) -> Moment:
    """The date, time of day and UTC offset written in ISO-like ``text``, each optional.

    >>> moment("2024-01-01 10:30:00.5+05:30", "timestamptz")
    Moment(day=datetime.date(2024, 1, 1), micros=37800500000, offset=19800)
    >>> moment("10:30", "time")
    Moment(day=None, micros=37800000000, offset=None)
    """
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
            raise syntax_error(name, text)
    time_found = _TIME_PART.match(rest)
    if time_found:
        rest = rest[time_found.end():].lstrip()
    elif needs_time:
        raise syntax_error(name, text)
    zone_found = _ZONE_PART.fullmatch(rest)
    if rest and zone_found is None:
        raise syntax_error(name, text)

    out_of_range = Invalid(f'date/time field value out of range: "{shown(text)}"')
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
                raise Invalid(f'time zone displacement out of range: "{shown(text)}"')
            offset = (hours * 3600 + minutes * 60 + seconds) * (-1 if sign == "-" else 1)
    return Moment(day, micros, offset)


def _clock(micros: int) -> str:
    """A time of day as Postgres prints it.

    >>> _clock(37800000000), _clock(37800500000)
    ('10:30:00', '10:30:00.500000')
    """
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def _zone(offset: int) -> str:
    """A UTC offset in seconds as Postgres prints it.

    >>> _zone(19800), _zone(-3600), _zone(-3661)
    ('+05:30', '-01:00', '-01:01:01')
    """
    sign = "-" if offset < 0 else "+"
    minutes, second = divmod(abs(offset), 60)
    hour, minute = divmod(minutes, 60)
    return f"{sign}{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def temporal_type(name: str) -> ColumnType:
    """``date``, ``time``, ``timetz``, ``timestamp`` or ``timestamptz``.

    Dates and timestamps also read ``infinity``, ``-infinity`` and ``epoch``; timestamp
    ignores an offset, timestamptz compares instants, and timetz orders by UTC instant but
    is equal only when the zone is equal too, as in Postgres.

    >>> timetz = temporal_type("timetz")
    >>> timetz.from_text("10:30+02") == timetz.from_text("08:30Z")
    False
    >>> timestamp = temporal_type("timestamp")
    >>> timestamp.from_text("2024-01-01 08:00+05") == timestamp.from_text("2024-01-01T08:00")
    True
    >>> date_type = temporal_type("date")
    >>> date_type.from_text("2024-01-01") < date_type.from_text("infinity")
    True
    """
    def from_text(text: str) -> Any:
        if name in ("timestamptz", "timestamp", "date"):
            word = text.strip().lower()
            if word in _TIME_WORDS:
                return _TIME_WORDS[word]
            if word == "epoch":
                text = "1970-01-01 00:00:00+00"
        parts = moment(text, name)
        if name == "date":
            if parts.day is None:
                raise syntax_error(name, text)
            return (0, parts.day)
        if name in ("time", "timetz"):
            if parts.micros is None:
                raise syntax_error(name, text)
            if name == "time":
                return parts.micros
            offset = parts.offset or 0
            return (parts.micros - offset * 1_000_000, -offset)
        if parts.day is None:
            raise syntax_error(name, text)
        shift = (parts.micros or 0)
        zone = None
        if name == "timestamptz":
            shift -= (parts.offset or 0) * 1_000_000
            zone = UTC
        try:
            start = datetime(parts.day.year, parts.day.month, parts.day.day, tzinfo=zone)
            return (0, start + timedelta(microseconds=shift))
        except OverflowError:
            raise Invalid(f'timestamp out of range: "{shown(text)}"') from None

    def from_json(value: Any) -> Any:
        if isinstance(value, str):
            return from_text(value)
        raise syntax_error(name, value)

    def canon(k: Any) -> str:
        if name == "time":
            return _clock(k)
        if name == "timetz":
            offset = -k[1]
            return _clock(k[0] + offset * 1_000_000) + _zone(offset)
        if k[0]:
            return "infinity" if k[0] > 0 else "-infinity"
        return k[1].isoformat()

    return ColumnType(name, "temporal", from_text, from_json, canon)
