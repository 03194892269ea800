"""SMS encoding and segments: GSM-7 basic and extension characters, UCS-2, and fit()."""
from __future__ import annotations

import random

import pytest

from ripple.notify.sms import GSM7_BASIC, GSM7_EXTENSION, encoding, fit, segments


@pytest.mark.parametrize("body, expected", [
    ("", "GSM-7"),
    ("Hello, world! 123 @£$¥ èéùìò ÄÖÑÜ§¿äöñüà ΔΦΓΛΩΠΨΣΘΞ", "GSM-7"),
    ("line\nbreak\r", "GSM-7"),
    ("{braces} [brackets] ~tilde~ |pipe| ^caret\\ €5", "GSM-7"),
    ("Wait…", "UCS-2"),              # the ellipsis character is not GSM-7
    ("“quoted”", "UCS-2"),           # neither are curly quotes
    ("it’s", "UCS-2"),
    ("ç", "UCS-2"),                  # only the capital Ç is in the basic set
    ("tab\there", "UCS-2"),
    ("Hi 😀", "UCS-2"),
    ("Привет", "UCS-2"),
    ("\x1b", "UCS-2"),               # ESC is an escape, never a character on its own
])
def test_encoding(body, expected):
    assert encoding(body) == expected


def test_gsm7_tables_have_the_standard_sizes():
    assert len(GSM7_BASIC) == 127  # 128 codes minus ESC
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize("body, expected", [
    ("", 0),
    ("a", 1),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("a" * 459, 3),
    ("a" * 460, 4),
    # extension characters take two septets
    ("€" * 80, 1),
    ("€" * 81, 2),
    ("a" * 159 + "€", 2),
    ("a" * 158 + "{", 1),
    # ... and are never split across parts: 152 + 2 does not fit in 153
    ("a" * 152 + "€" + "a" * 152, 3),
    ("a" * 151 + "€" + "a" * 153, 2),
    # UCS-2
    ("é" * 70 + "ç", 2),
    ("ç" * 70, 1),
    ("ç" * 71, 2),
    ("ç" * 134, 2),
    ("ç" * 135, 3),
    ("a" * 159 + "…", 3),            # one non-GSM character turns 160 chars into 3 parts
    ("€" * 70 + "ç", 2),             # extension chars count once in UCS-2
    # emoji outside the BMP are surrogate pairs: two units
    ("😀" * 35, 1),
    ("😀" * 35 + "a", 2),
    ("😀" * 67, 3),                  # 33 pairs fill 66 units; a pair is never split
    ("👍🏽" * 17, 1),                  # skin-tone modifier: 4 units per thumb
    ("👍🏽" * 18, 2),
])
def test_segments(body, expected):
    assert segments(body) == expected


@pytest.mark.parametrize("body, max_segments", [
    ("a" * 200, 1),
    ("a" * 1000, 3),
    ("€" * 200, 1),
    ("€" * 500, 2),
    ("ç" * 200, 1),
    ("😀" * 100, 1),
    ("😀" * 100, 2),
    ("Your order shipped " * 30, 1),
    ("Votre commande est expédiée … " * 20, 2),
    ("a" * 150 + "😀" + "b" * 200, 1),   # the non-GSM character falls beyond the cut
    ("😀" + "b" * 300, 1),
    ("{" * 100 + "…" + "}" * 100, 1),
])
def test_fit_stays_within_budget_and_keeps_a_prefix(body, max_segments):
    fitted = fit(body, max_segments)
    assert segments(fitted) <= max_segments
    assert fitted != body
    ellipsis = "..." if encoding(fitted) == "GSM-7" else "…"
    assert fitted.endswith(ellipsis)
    assert body.startswith(fitted[:-len(ellipsis)])


@pytest.mark.parametrize("body, max_segments", [
    ("", 1), ("short", 1), ("a" * 160, 1), ("a" * 306, 2), ("😀" * 35, 1), ("ç" * 134, 2),
])
def test_fit_leaves_fitting_bodies_alone(body, max_segments):
    assert fit(body, max_segments) is body


def test_fit_uses_three_dots_for_gsm7_text():
    fitted = fit("a" * 200, 1)
    assert fitted == "a" * 157 + "..." and encoding(fitted) == "GSM-7"


def test_fit_uses_the_ellipsis_character_for_ucs2_text():
    fitted = fit("ç" * 100, 1)
    assert fitted == "ç" * 69 + "…" and segments(fitted) == 1


def test_fit_prefers_gsm7_when_the_non_gsm_character_can_be_cut_off():
    fitted = fit("a" * 150 + "😀" + "b" * 200, 1)
    assert fitted == "a" * 150 + "..." and encoding(fitted) == "GSM-7"


def test_fit_fills_multiple_parts():
    assert fit("a" * 1000, 2) == "a" * 303 + "..."
    assert fit("€" * 500, 2) == "€" * 151 + "..."  # 151 * 2 + 3 = 305 septets, none split


def test_fit_cuts_at_a_nearby_word_boundary():
    body = "Your enrollment in Advanced Mathematics is confirmed. " * 4
    fitted = fit(body, 1)
    assert fitted.endswith("...") and not fitted.endswith(" ...")
    assert body[len(fitted) - 3] == " "  # the kept text ended at a whole word


def test_fit_cuts_mid_word_when_no_space_is_near():
    assert fit("x " + "y" * 300, 1) == "x " + "y" * 155 + "..."


def test_fit_rejects_a_budget_below_one():
    with pytest.raises(ValueError):
        fit("text", 0)


def test_fit_never_exceeds_the_budget_on_random_text():
    rng = random.Random(20260115)
    alphabet = "abc xyz {}€[]~|^\\ é ç … 😀 👍🏽 \n\t\u00a0" + "Ωλ"
    for _ in range(1500):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 700)))
        budget = rng.randint(1, 5)
        fitted = fit(body, budget)
        assert segments(fitted) <= budget
        if segments(body) <= budget:
            assert fitted == body
