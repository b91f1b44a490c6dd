"""Where a streamed reply is cut (middleware.pipeline.chunks): the boundaries, what is
held back (a number or a secret that may go on), and that finding them costs the
same however long the text has grown.

Costs are proven by what the chunker looks at, not by timing: the number tail is
decided by the last NUMBER_TAIL_CHARS characters alone (whatever comes before them
gives the same cut), and a sentence end already searched is not searched again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from middleware.masking import forget_secrets, mask_text, remember_secrets
from middleware.pipeline.chunks import (
    MASK_CONTEXT_CHARS,
    NUMBER_TAIL_CHARS,
    Chunker,
    mask_context,
    unfinished_secret,
)

TAIL = "9 " * 40 + "4111 1111 "  # a number run longer than the window, ending in a card


def _held_after(text: str) -> str:
    chunker = Chunker(chunk_chars=5)
    chunker.feed(text)
    chunker.cut(hold_expired=True)
    return chunker.pending


@pytest.mark.parametrize("before", ["1 " * 20_000, "word " * 8_000, "", "Total "])
def test_a_number_tail_is_decided_by_its_last_characters_only(before: str) -> None:
    chunker = Chunker(chunk_chars=5)
    chunker.feed("Numbers " + before + TAIL)
    shown = chunker.cut(hold_expired=True)
    held = chunker.pending
    # The same characters are held back whatever came before the window...
    assert held == TAIL[-len(held) :] and len(held.rstrip()) <= NUMBER_TAIL_CHARS
    assert len(held) == len(_held_after("word " * 3 + TAIL))
    # ...and the card number at the end is among them (the next piece may continue it).
    assert held.endswith("4111 1111 ") and shown + held == "Numbers " + before + TAIL


def test_short_numbers_are_held_back_as_before() -> None:
    chunker = Chunker(chunk_chars=5)
    chunker.feed("Call me on +44 20 7946 ")
    assert chunker.cut(hold_expired=True) == "Call me on "
    chunker.feed("0958 today. Or DE89 3704 ")
    assert chunker.cut() == "+44 20 7946 0958 today. "
    assert chunker.pending == "Or DE89 3704 "
    chunker.feed("0044 0532 0130 00\nThanks")
    assert chunker.cut() == "Or DE89 3704 0044 0532 0130 00\n"  # a line break ends a number


def test_sentence_ends_are_searched_once_as_the_text_grows() -> None:
    # A reply with no sentence end is never cut before its hold expires; each piece
    # must cost the same, so the search resumes where it stopped.
    chunker = Chunker(chunk_chars=200)
    for _ in range(5_000):
        chunker.feed("1 ")
        assert chunker.cut() == ""
        assert chunker._resume == len(chunker.pending)  # nothing before this is searched again
    chunker.feed("done.\n")
    assert chunker.cut() == "1 " * 5_000 + "done.\n"


def test_a_growing_sentence_end_is_found_again() -> None:
    chunker = Chunker(chunk_chars=3)
    chunker.feed("Line one\n")
    assert chunker._sentence_end() == len("Line one\n")
    chunker.feed("  \n  Next")  # the same end, grown: the chunk takes the whole blank run
    assert chunker.cut() == "Line one\n  \n  "
    assert chunker.pending == "Next"


@pytest.fixture
def phrase() -> Iterator[str]:
    value = "correct horse battery staple"
    remember_secrets([value])
    yield value
    forget_secrets()


def test_the_start_of_a_remembered_value_with_spaces_is_held_back(phrase: str) -> None:
    chunker = Chunker(chunk_chars=5)
    chunker.feed("Use xcorrect horse ")  # masking finds a value anywhere, not only at a word
    assert chunker.cut(hold_expired=True) == "Use "  # held from the start of its word
    assert unfinished_secret("Use xcorrect horse ") == len("Use ")
    chunker.feed("battery staple now. Then")
    assert chunker.cut() == "xcorrect horse battery staple now. "
    assert unfinished_secret("a horse battery ") is None  # not the value's start


def test_a_private_key_block_is_held_until_its_end_line() -> None:
    chunker = Chunker(chunk_chars=5)
    chunker.feed("Key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0\n")
    assert chunker.cut() == "Key:\n"
    for _ in range(50):  # lines of the key: cut at each line break, none released
        chunker.feed("MIIEvQIBADANBgkqhkiG9w0\n")
        assert chunker.cut() == ""
        assert chunker.cut(hold_expired=True) == ""
    chunker.feed("-----END PRIVATE KEY-----\nThat is all. Really." + " more" * 200 + ". ")
    block = chunker.cut()
    assert block.startswith("-----BEGIN") and "That is all. " in block


@pytest.mark.parametrize("before", ["", "Some words before it. " * 50, "x" * 500 + " "])
@pytest.mark.parametrize("blanks", [" ", "\n\n", " " * 5000])
def test_the_masking_context_keeps_the_name_before_a_value(before: str, blanks: str) -> None:
    shown = f"{before}Here it is. DB_PASSWORD:{blanks}"
    context = mask_context(shown)
    words = context.rstrip()
    # The last words of what was shown, then its blanks clipped to the window...
    assert shown.rstrip().endswith(words) and words.endswith("Here it is. DB_PASSWORD:")
    assert MASK_CONTEXT_CHARS <= len(words) <= 2 * MASK_CONTEXT_CHARS or words == shown.rstrip()
    assert context[len(words) :] == blanks[:MASK_CONTEXT_CHARS]
    # ...from a word start, unless that word is longer than the window too (then cut).
    before_words = shown[: len(shown.rstrip()) - len(words)]
    assert not before_words or before_words[-1].isspace() or before.startswith("x")
    # The value after it is masked as in the whole text.
    value = "hunter2Xy9 and that is all."
    assert mask_text(context + value)[len(context) :] == mask_text(shown + value)[len(shown) :]
    assert mask_text(shown + value).endswith("[SECRET:credential] and that is all.")


def test_a_word_longer_than_the_window_is_cut_not_dropped() -> None:
    shown = "a " + "x" * 300 + "PASSWORD: "
    context = mask_context(shown)
    assert shown.endswith(context) and context.endswith("xPASSWORD: ")
    assert len(context) == MASK_CONTEXT_CHARS + 1  # the window and the one blank after it


def test_the_first_pieces_of_a_key_written_in_pieces_are_held_back() -> None:
    # What the next piece would join to a key ("sk-proj- Ab3d…") waits for it...
    assert unfinished_secret("Your key is sk-proj- ") == len("Your key is ")
    assert unfinished_secret("Set aws_secret_access_key = ") == len("Set ")
    # ...but not where nothing could be joined (two blanks, a word after the start).
    assert unfinished_secret("Your key is sk-proj-  ") is None
    assert unfinished_secret("Use the sk- prefix ") is None
    chunker = Chunker(chunk_chars=5)
    chunker.feed("Your key is sk-proj- ")
    assert chunker.cut(hold_expired=True) == "Your key is "
