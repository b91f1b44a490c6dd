"""Where a streamed reply is cut into chunks, so that each can be screened whole.

Cuts fall only after whitespace: at a sentence end or a line break once
``chunk_chars`` have gathered, or at any word boundary once text has waited
``max_hold_ms``. A cut never falls inside a word, so an e-mail address or an
API key is always judged (and masked) whole; a trailing run of digit groups
(a card or phone number written "4111 1111 ...") is held back to the next cut,
since the next piece may continue it.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?:;])[ \t]+|\n\s*")
_WORD_END = re.compile(r"\s+")
# Digits in groups at the end of a chunk: a card, phone or account number may go on.
_NUMBER_TAIL = re.compile(r"(?:^|(?<=\s))[+(]?\d(?:[\d\s().-]*[\d)])?$")


def _held_back(text: str, cut: int) -> int:
    """Move ``cut`` back before a trailing number that could continue after it."""
    if text[cut - 1 : cut] == "\n":
        return cut  # a line break ends any number
    match = _NUMBER_TAIL.search(text[:cut].rstrip())
    return match.start() if match else cut


class Chunker:
    """Cuts a growing text into chunks at safe boundaries (see the module docstring)."""

    def __init__(self, chunk_chars: int) -> None:
        self.chunk_chars = chunk_chars
        self.pending = ""

    def feed(self, piece: str) -> None:
        self.pending += piece

    def cut(self, *, hold_expired: bool = False, final: bool = False) -> str:
        """The next chunk ("" when none is ready yet); removed from ``pending``."""
        text = self.pending
        if final:
            self.pending = ""
            return text
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        at = ends[-1] if ends and (hold_expired or ends[-1] >= self.chunk_chars) else 0
        if not at and hold_expired:
            words = [m.end() for m in _WORD_END.finditer(text)]
            at = words[-1] if words else 0
        at = _held_back(text, at) if at else 0
        self.pending = text[at:]
        return text[:at]


def context_of(shown: str, context_chars: int) -> str:
    """The last ``context_chars`` of what was shown, from a word start (no half words)."""
    if len(shown) <= context_chars:
        return shown
    tail = shown[-context_chars:]
    space = re.search(r"\s", tail)
    return tail[space.end() :] if space else ""
