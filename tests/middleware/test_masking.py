"""Remembered secret values are masked whole, even split by invisible characters.

A configured value with no key shape (a Slack signing secret, a database
password) was masked only as a plain substring: a zero-width space, a soft
hyphen or a tag character inside it left it readable in replies, the decision
log and the log files. These tests remember real values the way GuardBot does
and check what a reader of the masked text sees: the text as written outside
the value, and nothing of the value.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest

from middleware.guards.normalize import strip_invisible
from middleware.masking import (
    CONFIGURED,
    SecretFilter,
    forget_secrets,
    known_secrets,
    mask_known,
    mask_storable,
    mask_text,
    remember_secrets,
)

# Shapeless: no issuer prefix and no credential name before it, so only its value finds it.
SIGNING = "8f3kq2ZpX7wVb4mN1cRt"
PASSWORD = "pl4in Tidal-Mango 93"  # spaces inside, as a passphrase may have
TAG = "\U000e0041"  # an invisible copy of "A"
INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u00ad", TAG, "\U000e0000", "\U000e007f", "\u200d"]


@pytest.fixture(autouse=True)
def remembered() -> Iterator[None]:
    remember_secrets([SIGNING, PASSWORD, None, "short"])
    yield
    forget_secrets()


def readable(value: str, text: str) -> bool:
    """Whether any 5 characters of ``value`` can be read in ``text``, invisibles aside."""
    plain = strip_invisible(text)
    return any(value[i : i + 5] in plain for i in range(len(value) - 4))


def test_a_value_is_shapeless_so_only_its_value_finds_it() -> None:
    forget_secrets()
    assert mask_text(f"sig {SIGNING} end") == f"sig {SIGNING} end"
    assert (
        mask_text(f"sig {SIGNING[:6]}\u200b{SIGNING[6:]}")
        == f"sig {SIGNING[:6]}\u200b{SIGNING[6:]}"
    )


@pytest.mark.parametrize("invisible", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_a_value_split_by_an_invisible_character_is_masked_whole(invisible: str) -> None:
    split = f"{SIGNING[:7]}{invisible}{SIGNING[7:]}"
    text = f"The secret is {split}, keep it."
    assert readable(SIGNING, text)  # the test's own check sees it
    assert mask_text(text) == f"The secret is {CONFIGURED}, keep it."
    assert mask_storable(text, redact_pii=True) == f"The secret is {CONFIGURED}, keep it."


def test_every_character_apart_and_a_value_with_spaces() -> None:
    assert mask_text("x " + "\u2060".join(SIGNING) + " y") == f"x {CONFIGURED} y"
    assert mask_text(TAG.join(PASSWORD) + "!") == f"{CONFIGURED}!"
    assert mask_text(f"pass: {PASSWORD[:5]}\u00ad{PASSWORD[5:]}") == f"pass: {CONFIGURED}"


def test_full_width_forms_of_a_value_are_masked_too() -> None:
    wide = "".join(chr(ord(c) + 0xFEE0) for c in SIGNING)  # ASCII letters and digits
    assert mask_text(f"wide: {wide} end") == f"wide: {CONFIGURED} end"


def test_the_text_outside_a_value_stays_as_written() -> None:
    text = f"café\u200b ｏｋ {SIGNING} and {SIGNING[:3]}\ufeff{SIGNING[3:]} 😀 ﬁn"
    assert mask_text(text) == f"café\u200b ｏｋ {CONFIGURED} and {CONFIGURED} 😀 ﬁn"
    # Invisible characters next to a value, not inside it, are kept where they are.
    assert mask_known(f"a \ufeff{SIGNING}\ufeff b") == f"a \ufeff{CONFIGURED}\ufeff b"


def test_ordinary_texts_are_unchanged() -> None:
    for text in [
        "Hello, how are you?",
        "Grüße aus Köln, naïve café 😀",
        "zero\u200bwidth but nothing secret",
        "8f3kq2Zp and 7wVb4mN1cRt apart",  # both halves, not the value
        "ｆｕｌｌ ｗｉｄｔｈ",
    ]:
        assert mask_text(text) == text


def test_random_invisible_characters_never_leave_a_piece_of_a_value() -> None:
    rng = random.Random(7)
    for _ in range(300):
        value = rng.choice([SIGNING, PASSWORD])
        chars = list(value)
        for _ in range(rng.randrange(1, 4)):
            chars.insert(rng.randrange(1, len(chars)), rng.choice(INVISIBLE))
        text = "Note: " + "".join(chars) + " end"
        masked = mask_storable(text, redact_pii=False)
        assert strip_invisible(masked) == f"Note: {CONFIGURED} end", text
        assert not readable(value, masked), text


def test_log_records_are_masked_through_invisible_characters() -> None:
    record = logging.LogRecord(
        "t",
        logging.WARNING,
        __file__,
        1,
        "answer: %s",
        (f"{SIGNING[:4]}\u200b{SIGNING[4:]}",),
        None,
    )
    SecretFilter().filter(record)
    assert record.getMessage() == f"answer: {CONFIGURED}"


def test_known_secrets_are_the_values_as_given_longest_first() -> None:
    """The streamed reply's hold-back reads these: values only, not their plain forms."""
    hidden = f"{SIGNING[:5]}\u200b{SIGNING[5:]}x"  # given with an invisible character
    remember_secrets([hidden])
    assert set(known_secrets()) == {hidden, PASSWORD, SIGNING}
    assert [len(v) for v in known_secrets()] == sorted(map(len, known_secrets()), reverse=True)
    assert mask_text(f"{SIGNING}x.") == f"{CONFIGURED}."  # its plain form is searched too


def test_a_hidden_value_and_a_hidden_key_in_one_text_are_both_masked() -> None:
    """Shape masking reads the plain form the value masking made: both see through."""
    key = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    text = f"sig {SIGNING[:4]}\u200b{SIGNING[4:]} key {key[:9]}\u200b{key[9:]} ok"
    assert mask_text(text) == f"sig {CONFIGURED} key [SECRET:github] ok"
    assert mask_text(f"key {key[:9]}\u200b{key[9:]} ok") == "key [SECRET:github] ok"
