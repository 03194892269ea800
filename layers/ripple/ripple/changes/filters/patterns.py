"""LIKE/ILIKE patterns and ``match``/``imatch`` regexes, read as Postgres reads them.

Both compile to matchers that run in time linear in the text, so no filter can stall the
fanout: LIKE is cut at its wildcards into fixed pieces, and a Postgres regex (an ARE) is
translated to RE2 syntax and compiled by RE2.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import re2

from ripple.changes.filters.exceptions import Invalid


def like_matcher(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    """A LIKE test for ``pattern`` (``%``/``*`` any run, ``_`` one char, ``\\`` escapes).

    The pattern is cut at its wildcards into fixed-length pieces matched left to right, so a
    test is linear in the text rather than backtracking over every ``%``. Raises ``Invalid``
    for a pattern ending in a lone backslash.

    >>> starts_hel = like_matcher("Hel%", ignore_case=False)
    >>> starts_hel("Hello"), starts_hel("hello")
    (True, False)
    >>> like_matcher("h_llo*", ignore_case=True)("HELLO, world")
    True
    >>> like_matcher(r"100\\%", ignore_case=False)("100%")
    True
    """
    pieces: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                raise Invalid("LIKE pattern must not end with escape character")
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


def regex_matcher(pattern: str, ignore_case: bool) -> Callable[[str], bool]:
    """A test of whether ``pattern`` (a Postgres ``~`` regex) occurs in a text.

    The pattern is translated to RE2 and compiled there; raises ``Invalid`` for what
    Postgres would reject and for what RE2 cannot run in linear time (lookaround,
    back-references).

    >>> regex_matcher(r"\\mworld$", ignore_case=False)("Hello, world")
    True
    >>> regex_matcher("[[:upper:]]{2}", ignore_case=False)("aBc")
    False
    >>> regex_matcher("(?=a)", ignore_case=False)
    Traceback (most recent call last):
      ...
    ripple.changes.filters.exceptions.Invalid: invalid regular expression: lookaround and "(?" constructs are not supported
    """
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == len(pattern):
                raise Invalid("invalid regular expression: trailing backslash")
            escape = pattern[i + 1]
            out.append(_ARE_ESCAPES.get(escape, "\\" + escape))
            i += 2
        elif ch == "[":
            bracket, i = _posix_bracket(pattern, i)
            out.append(bracket)
        elif ch == "(":
            prefix = next((p for p in _REGEX_GROUP_PREFIXES if pattern.startswith(p, i)), "(")
            if prefix == "(" and pattern.startswith("(?", i):
                raise Invalid('invalid regular expression: lookaround and "(?" constructs '
                              'are not supported')
            depth += 1
            out.append(prefix)
            i += len(prefix)
        elif ch == ")":
            if depth == 0:
                raise Invalid('invalid regular expression: unmatched ")"')
            depth -= 1
            out.append(")")
            i += 1
        elif ch in "*+?" or (ch == "{" and _BOUND.match(pattern, i)):
            token, i = _quantifier(pattern, i)
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
        regex = re2.compile("".join(out), options)
    except (re2.error, ValueError) as e:
        detail = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise Invalid(f"invalid regular expression: {detail}") from None
    return lambda text: regex.search(text) is not None


def _quantifier(pattern: str, start: int) -> tuple[str, int]:
    """The quantifier at ``start`` (``*``, ``+``, ``?``, ``{m,n}``, maybe lazy), and the end.

    >>> _quantifier("a{2,3}?b", 1)
    ('{2,3}?', 7)
    """
    bound = _BOUND.match(pattern, start)
    if bound is not None:
        low = int(bound[1])
        high = low if bound[2] is None else (int(bound[3]) if bound[3] else None)
        if low > _MAX_BOUND or (high is not None and (high > _MAX_BOUND or high < low)):
            raise Invalid("invalid regular expression: invalid repetition count(s)")
        token, i = bound[0], bound.end()
    else:
        token, i = pattern[start], start + 1
    if pattern.startswith("?", i):  # lazy modifier, not another quantifier
        token += "?"
        i += 1
    return token, i


def _posix_bracket(pattern: str, start: int) -> tuple[str, int]:
    """The RE2 set for the bracket expression at ``start`` and the index after it.

    >>> _posix_bracket("x[^[:digit:]_]y", 1)
    ('[^0-9_]', 14)
    """
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
                raise Invalid(f'invalid regular expression: unknown class "[:{name}:]"')
            parts.append(_POSIX_CLASSES[name])
            i = end + 2
        elif pattern.startswith(("[.", "[="), i):
            raise Invalid("invalid regular expression: collating elements are not supported")
        elif ch == "\\":
            if i + 1 == len(pattern):
                raise Invalid("invalid regular expression: trailing backslash")
            parts.append(pattern[i:i + 2])
            i += 2
        else:
            # Characters Python reserves for future set operations are escaped to stay literal.
            parts.append("\\" + ch if ch in "[&~|" else ch)
            i += 1
    if i >= len(pattern):
        raise Invalid('invalid regular expression: unterminated "["')
    parts.append("]")
    return "".join(parts), i + 1
