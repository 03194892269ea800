"""SMS length: GSM-7 or UCS-2 encoding, segment counts, and fitting a body to a budget.

A single SMS carries 160 GSM-7 characters or 70 UCS-2 code units. A longer message is sent
as concatenated parts whose header leaves 153 GSM-7 characters or 67 UCS-2 units each.
GSM-7 applies only when every character is in the GSM 03.38 basic set or its extension
table; one character outside (an emoji, "…", a curly quote) turns the whole message into
UCS-2. Extension characters (``^{}\\[~]|€`` and form feed) take two septets, and neither
they nor a UTF-16 surrogate pair are split across parts, so counts match what carriers bill.

>>> encoding("Your code is 1234"), segments("Your code is 1234")
('GSM-7', 1)
>>> encoding("Café ☕"), segments("x" * 71 + "☕")
('UCS-2', 2)
>>> fit("Your order shipped and will arrive soon", max_segments=1)
'Your order shipped and will arrive soon'
"""
from __future__ import annotations

from typing import Literal, TypeAlias

Encoding: TypeAlias = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic character set, minus ESC (0x1B), which only introduces extension characters.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each is sent as ESC + character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

_GSM7_ELLIPSIS = "..."
_UCS2_ELLIPSIS = "…"
# How far back from the cut ``fit`` looks for a space, so it does not end mid-word.
_WORD_LOOKBACK = 15


def encoding(body: str) -> Encoding:
    """``'GSM-7'`` when every character of ``body`` has a GSM-7 code, else ``'UCS-2'``."""
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body) else "UCS-2"


def segments(body: str) -> int:
    """How many SMS parts ``body`` is sent as; 0 for an empty body."""
    if encoding(body) == "GSM-7":
        return _count(_gsm7_units(body), GSM7_SINGLE, GSM7_PART)
    return _count(_ucs2_units(body), UCS2_SINGLE, UCS2_PART)


def fit(body: str, max_segments: int) -> str:
    """``body`` unchanged if it fits in ``max_segments`` parts, else cut with an ellipsis.

    The cut keeps as much text as fits, preferring a word boundary nearby, and ends with
    ``"..."`` while the kept text is GSM-7 (``"…"`` would force UCS-2 and shrink every part)
    or ``"…"`` when it is UCS-2 already. The result never exceeds ``max_segments``.

    >>> fit("a" * 200, 1) == "a" * 157 + "..."
    True
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if segments(body) <= max_segments:
        return body
    # Cost grows with the kept length, except where the first non-GSM-7 character switches the
    # encoding; search each side of that switch on its own and keep the longer result.
    switch = next((i for i, c in enumerate(body)
                   if c not in GSM7_BASIC and c not in GSM7_EXTENSION), len(body))
    kept = max(_longest_fitting(body, 0, switch, max_segments),
               _longest_fitting(body, switch + 1, len(body), max_segments))
    return _word_cut(body, kept, max_segments)


def _ellipsized(text: str) -> str:
    text = text.rstrip()
    return text + (_GSM7_ELLIPSIS if encoding(text) == "GSM-7" else _UCS2_ELLIPSIS)


def _longest_fitting(body: str, low: int, high: int, max_segments: int) -> int:
    """The largest n in [low, high] with ``body[:n]`` + ellipsis fitting, or -1 if none.

    On one side of the encoding switch the cost is monotonic in n, so a bisection is exact.
    """
    if low > high or segments(_ellipsized(body[:low])) > max_segments:
        return -1
    while low < high:
        middle = (low + high + 1) // 2
        if segments(_ellipsized(body[:middle])) <= max_segments:
            low = middle
        else:
            high = middle - 1
    return low


def _word_cut(body: str, kept: int, max_segments: int) -> str:
    """``body[:kept]`` with an ellipsis, backed up to a space when one is close."""
    if kept < len(body) and not body[kept].isspace():
        space = body.rfind(" ", max(0, kept - _WORD_LOOKBACK), kept)
        if space > 0:
            cut = _ellipsized(body[:space])
            if segments(cut) <= max_segments:
                return cut
    return _ellipsized(body[:kept])


def _gsm7_units(body: str) -> list[int]:
    return [2 if c in GSM7_EXTENSION else 1 for c in body]


def _ucs2_units(body: str) -> list[int]:
    return [2 if ord(c) > 0xFFFF else 1 for c in body]


def _count(units: list[int], single: int, part: int) -> int:
    total = sum(units)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > part:
            parts += 1
            used = 0
        used += size
    return parts
