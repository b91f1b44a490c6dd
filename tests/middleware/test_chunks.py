"""Where a streamed reply is cut (middleware.pipeline.chunks): the boundaries, and that
finding them costs the same however long the text has grown.

Costs are proven by what the chunker looks at, not by timing: the number tail is
decided by the last NUMBER_TAIL_CHARS characters alone (whatever comes before them
gives the same cut), and a sentence end already searched is not searched again.
"""

from __future__ import annotations

import pytest

from middleware.pipeline.chunks import NUMBER_TAIL_CHARS, Chunker

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
