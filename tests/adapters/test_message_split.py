"""The platform-neutral splitter: limits, words, paragraphs and code fences."""

from __future__ import annotations

import random
import re

import pytest

from adapters.message_split import FENCE, MIN_LIMIT, open_fence, split_message

_FENCE_LINE = re.compile(r"^\s*```[\w+#.-]*\s*$", re.M)


def content(text: str) -> str:
    """Everything but fence lines and whitespace: what a split must preserve."""
    return "".join(_FENCE_LINE.sub("", text).split())


def balanced(chunk: str) -> bool:
    return chunk.count(FENCE) % 2 == 0


def test_short_text_is_one_piece_and_empty_is_none() -> None:
    assert split_message("hello", 2000) == ["hello"]
    assert split_message("", 2000) == []
    assert split_message(" \n\t\n", 2000) == []
    assert split_message("\n\nhi\n\n", 2000) == ["hi"]


def test_limit_too_small_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_message("hello", MIN_LIMIT - 1)


def test_splits_at_spaces_never_inside_words() -> None:
    text = " ".join(f"word{i:03d}" for i in range(600))
    pieces = split_message(text, 2000)
    assert len(pieces) > 1
    assert all(len(p) <= 2000 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_prefers_paragraph_breaks() -> None:
    first = "alpha " * 200  # ~1200 chars
    second = "beta " * 200
    pieces = split_message(f"{first.strip()}\n\n{second.strip()}", 2000)
    assert pieces == [first.strip(), second.strip()]


def test_code_block_that_fits_moves_whole_to_the_next_message() -> None:
    prose = "intro " * 250  # ~1500 chars
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(80)) + "\n```"
    pieces = split_message(prose.strip() + "\n" + code, 2000)
    assert len(pieces) == 2
    assert pieces[1] == code
    assert FENCE not in pieces[0]


def test_huge_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(300)) + "\n```"
    pieces = split_message("Here you go:\n" + code + "\nDone.", 2000)
    assert len(pieces) >= 3
    for piece in pieces:
        assert len(piece) <= 2000
        assert balanced(piece), piece[-40:]
    for piece in pieces[1:-1]:
        assert piece.startswith("```python\n")
    # every code line survives intact, in order
    lines = [ln for p in pieces for ln in p.split("\n") if ln.startswith("value_")]
    assert lines == [f"value_{i} = compute({i})" for i in range(300)]
    assert pieces[-1].endswith("Done.")


def test_a_word_longer_than_the_limit_is_the_only_thing_cut() -> None:
    blob = "x" * 4500
    pieces = split_message(f"see {blob} end", 2000)
    assert all(len(p) <= 2000 for p in pieces)
    assert "".join(pieces).replace(" ", "") == f"see{blob}end"


def test_inline_triple_backticks_do_not_toggle_code_state() -> None:
    text = ("use ```x``` inline. " * 150).strip()
    pieces = split_message(text, 2000)
    assert all(balanced(p) and len(p) <= 2000 for p in pieces)


def test_open_fence_reads_code_as_the_splitter_does() -> None:
    # The streamed layout (adapters.live) closes and reopens exactly these fences.
    assert open_fence("Here:\n```python\nx = 1") == "```python"
    assert open_fence("Here:\n```python\nx = 1\n```\nDone.") is None
    assert open_fence("use ```x``` inline") is None
    assert open_fence("y = 2\n```", "```python") is None  # continues a block opened before
    assert open_fence("```" + "averyveryverylongtag\ncode") == "```"  # too long for a language
    assert all(open_fence(piece) is None for piece in split_message("a\n```sh\nls\n```", 20))


@pytest.mark.parametrize("seed", range(30))
def test_random_markdown_respects_the_limit_and_keeps_every_word(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(5, 40)):
        kind = rng.random()
        if kind < 0.2:
            body = "\n".join(
                "    " * rng.randint(0, 2) + " ".join(f"c{rng.randint(0, 999)}" for _ in range(8))
                for _ in range(rng.randint(1, 60))
            )
            parts.append(f"```{rng.choice(['', 'py', 'verylonglanguagename'])}\n{body}\n```")
        elif kind < 0.3:
            parts.append("w" * rng.randint(1, 300))
        else:
            parts.append(" ".join(f"w{rng.randint(0, 999)}" for _ in range(rng.randint(1, 120))))
    text = rng.choice(["\n", "\n\n"]).join(parts)
    limit = rng.choice([MIN_LIMIT, 50, 200, 2000])
    pieces = split_message(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert all(balanced(p) for p in pieces)
    assert content("\n".join(pieces)) == content(text)
