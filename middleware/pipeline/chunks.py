"""Where a streamed reply is cut into chunks, so that each can be screened whole.

Cuts fall only after whitespace: at a sentence end or a line break once
``chunk_chars`` have gathered, or at any word boundary once text has waited
``max_hold_ms``. A cut never falls inside a word, so an e-mail address or an
API key is always judged (and masked) whole; a trailing run of digit groups
(a card or phone number written "4111 1111 ...") is held back to the next cut,
since the next piece may continue it.

A secret that more text may complete is held back the same way, so that each
chunk can be masked exactly as the whole reply is: the start of a remembered
secret value that contains spaces, and a secret whose shape runs to the end of
the text (a private key block whose END line has not come yet).
"""

from __future__ import annotations

import re

from middleware.guards.secrets import find_secrets
from middleware.masking import known_secrets

_SENTENCE_END = re.compile(r"(?<=[.!?:;])[ \t]+|\n\s*")
_WORD_END = re.compile(r"\s+")
# Digits in groups at the end of a chunk: a card, phone or account number may go on.
_NUMBER_TAIL = re.compile(r"(?:^|(?<=\s))[+(]?\d(?:[\d\s().-]*[\d)])?$")
# The longest number worth holding back: an IBAN (34 characters) written in groups, or
# a card or phone number with separators, is shorter. The tail is searched only this far
# back: the pattern tried at every start of a long "1 1 1 ..." run was quadratic.
NUMBER_TAIL_CHARS = 64
# A random-looking piece of a key. Put after a cut, it asks whether the words before the
# cut start a key written in pieces ("sk-proj- Ab3d…"), which only the next chunk would
# complete: masked in the next chunk's window, that key would reach into what was shown.
# Asking the secret patterns so keeps one definition of what starts a key.
_KEY_PIECE = "Zq9xW7vK3mP5nR8tYb2cLd6fGh4jSa1eUo0iQw7r"
KEY_PIECES_CHARS = 128  # how far back the pieces before a cut are looked for


def _held_back(text: str, cut: int) -> int:
    """Move ``cut`` back before a trailing number that could continue after it.

    Only the last :data:`NUMBER_TAIL_CHARS` before the cut (and the one character
    before them, for the lookbehind) are looked at, so the cost does not grow with
    the text; a longer run of digits is held back by its last part only.
    """
    if text[cut - 1 : cut] == "\n":
        return cut  # a line break ends any number
    end = cut
    while end and text[end - 1].isspace():
        end -= 1
    match = _NUMBER_TAIL.search(text, max(0, end - NUMBER_TAIL_CHARS), end)
    return match.start() if match else cut


def unfinished_secret(text: str) -> int | None:
    """Where a secret starts that the text after ``text`` may complete (None: no such secret).

    Cuts fall after whitespace, so only a secret with whitespace inside can be
    split by one: a remembered value ("correct horse battery") whose first words
    end ``text``, or a found secret reaching the end of ``text`` (a private key
    block runs to the end until its END line comes; a key at the very end is held
    too, which costs it one cut's delay), or the first pieces of a key written in
    pieces (see ``_KEY_PIECE``).
    """
    starts = [
        len(text) - j
        for value in known_secrets()
        for j in range(1, len(value))
        if value[j - 1].isspace() and text.endswith(value[:j])
    ]
    end = len(text.rstrip())
    starts.extend(start for start, stop, _ in find_secrets(text) if stop >= end)
    at = max(0, len(text) - KEY_PIECES_CHARS)
    tail = text[at:]
    found = find_secrets(tail + _KEY_PIECE)
    starts.extend(at + start for start, stop, _ in found if start < len(tail) < stop)
    if not starts:
        return None
    start = min(starts)
    while start and not text[start - 1].isspace():
        start -= 1  # from its word's start: a cut still never falls inside a word
    return start


class Chunker:
    """Cuts a growing text into chunks at safe boundaries (see the module docstring)."""

    def __init__(self, chunk_chars: int) -> None:
        self.chunk_chars = chunk_chars
        self.pending = ""
        # The sentence ends of ``pending`` are searched once, not again on every piece
        # (a reply with none, held back as it grows, was quadratic): the last end found
        # so far, and where the next search starts.
        self._end = 0
        self._resume = 0
        # ``pending`` starts with an unfinished secret, found in its first ``_secret_at``
        # characters: looked at again only once a chunk's worth or a quarter more text
        # has come, so a long one (a "BEGIN" with no END) costs linear time in all.
        self._secret_at = 0

    def feed(self, piece: str) -> None:
        self.pending += piece

    def _sentence_end(self) -> int:
        """Where the last sentence end of ``pending`` ends (0: none), searching new text only.

        A match that ends before the end of the text is final (more text changes
        neither it nor where it ends); one that reaches the end may grow ("\n" and then
        more spaces), so the next search starts at it again.
        """
        text = self.pending
        resume = len(text)
        for m in _SENTENCE_END.finditer(text, self._resume):
            self._end = m.end()
            if m.end() == len(text):
                resume = m.start()
        self._resume = resume
        return self._end

    def cut(self, *, hold_expired: bool = False, final: bool = False) -> str:
        """The next chunk ("" when none is ready yet); removed from ``pending``."""
        text = self.pending
        if final:
            self._keep("")
            return text
        end = self._sentence_end()
        at = end if end and (hold_expired or end >= self.chunk_chars) else 0
        if not at and hold_expired:
            words = [m.end() for m in _WORD_END.finditer(text)]
            at = words[-1] if words else 0
        at = _held_back(text, at) if at else 0
        if at:
            at = self._secret_held(text, at)
        if at:
            self._keep(text[at:])
        return text[:at]

    def _secret_held(self, text: str, at: int) -> int:
        """``at``, or before a secret in ``text[:at]`` that the text after it may complete."""
        if self._secret_at and at < self._secret_at + max(self.chunk_chars, self._secret_at // 4):
            return 0
        start = unfinished_secret(text[:at])
        self._secret_at = at if start == 0 else 0
        return at if start is None else start

    def _keep(self, rest: str) -> None:
        # Searched afresh: at the start of the rest, the lookbehind no longer sees the cut text.
        self.pending, self._end, self._resume, self._secret_at = rest, 0, 0, 0


# How far back into what was shown a chunk is masked with, whatever ``context_chars`` (the
# output guards' window) says: a value is masked by the name before it ("DB_PASSWORD: " at
# the end of the last chunk), and every credential name with its separator is far shorter.
MASK_CONTEXT_CHARS = 64
_LAST_SPACE = re.compile(r"\s\S*\Z")


def mask_context(shown: str) -> str:
    """What of ``shown`` a chunk is masked after: its last words, and its trailing whitespace.

    The last :data:`MASK_CONTEXT_CHARS` before the trailing whitespace, from the start
    of the word cut there (a word longer than the window too is cut, which can only
    make a mask reach into the context, and the chunk is then masked alone), then at
    most as much of the whitespace. Clipping a run of whitespace longer than that
    masks the same: the secret patterns read any run as one (``\\s*`` between a
    name and its value), or a run of more than one character as no join (a key
    written in pieces), and a shape that spans more is held back by the chunker.
    """
    end = _words_end(shown)
    start = max(0, end - MASK_CONTEXT_CHARS)
    if start:
        lo = max(0, start - MASK_CONTEXT_CHARS)
        if space := _LAST_SPACE.search(shown, lo, start):
            start = space.start() + 1
        elif lo == 0:
            start = 0
    return shown[start:end] + shown[end : end + MASK_CONTEXT_CHARS]


def _words_end(text: str) -> int:
    """Where the trailing whitespace of ``text`` starts, looking back only as far as it goes
    (a doubling tail: what was shown grows with every chunk, its whitespace rarely does)."""
    n = 4 * MASK_CONTEXT_CHARS
    while True:
        tail = text[-n:]
        if (words := len(tail.rstrip())) or n >= len(text):
            return len(text) - len(tail) + words
        n *= 2


def context_of(shown: str, context_chars: int) -> str:
    """The last ``context_chars`` of what was shown, from a word start (no half words).

    0 is no context, each chunk judged alone (``shown[-0:]`` would be all of it, so the
    window grew with the reply and screening cost its square). It is allowed: masking
    looks back on its own (:func:`mask_context`), so what 0 gives up is only that the
    output guards judge a phrase split across two chunks whole.
    """
    if context_chars <= 0:
        return ""
    if len(shown) <= context_chars:
        return shown
    tail = shown[-context_chars:]
    space = re.search(r"\s", tail)
    return tail[space.end() :] if space else ""
