"""Undo the usual tricks for slipping words past a filter, before matching.

Blocklists, injection patterns and the profanity model all see text that was
Unicode-normalised (NFKC: full-width and math letters become ASCII), stripped
of zero-width and other invisible format characters, with accents removed and
look-alike Cyrillic/Greek letters mapped to Latin. :func:`fold_leet` goes
further for word matching: digits and symbols used as letters become letters
and spaced-out letters ("f u c k", "f.u.c.k") are joined. Every function is
pure and cheap (a few translate/regex passes), so guards can call it per message.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

# Look-alikes that NFKC leaves alone (it keeps scripts apart on purpose).
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n",
    # Latin extensions and symbols that read as letters
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe",
}  # fmt: skip
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)

# Invisible characters used to split words: zero-width space/joiners, soft
# hyphen, word joiner, BOM, variation selectors, bidi controls, the tag block
# (U+E0000-E007F, invisible copies of ASCII) and musical formatting controls.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"}
)  # fmt: skip

# Three or more single letters/digits separated by one separator: "f u c k", "k.y.s".
_SPACED = re.compile(r"(?<![\w@$])(?:[\w@$][ .\-_*,·•]){2,}[\w@$](?![\w@$])")
_SEPARATORS = re.compile(r"[ .\-_*,·•]")
_MIXED = re.compile(r"[^\W\d_][0-9@$!|+€£]|[0-9@$!|+€£][^\W\d_]")
# A "word" for leet folding (letters, digits and the symbols that stand for letters),
# and only one holding a character that ``_LEET`` maps: no other word can change, and
# a Python call per word was most of the cost of folding.
_LEETWORD = re.compile(
    r"(?<![^\W_])(?<![@$!|+€£])(?:[^\W_]|[@$!|+€£])*[013-578-9@$!|+€£](?:[^\W_]|[@$!|+€£])*"
)


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, accents stripped, homoglyphs mapped, casefolded."""
    if text.isascii():  # the common case: only casefolding matters
        return text.lower()
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = text.casefold().translate(_HOMOGLYPH_TABLE)
    decomposed = unicodedata.normalize("NFD", text)
    if decomposed != text:
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return text


_EDGE_PUNCT = "!|+"


def _fold_word(match: re.Match[str]) -> str:
    word = match.group(0)
    # Only mixed tokens are leetspeak; "2024" or "42" stay numbers.
    if word.isalpha() or not any(c.isalpha() for c in word):
        return word
    # "!" and "|" stand for letters inside a word ("sh!t"), but end a sentence ("hi!!!").
    # Stripped, not matched: "^([!|+]*)(.*?)([!|+]*)$" retried the tail at each character,
    # quadratic on a word like "a!!!…!b".
    core = word.lstrip(_EDGE_PUNCT)
    lead = word[: len(word) - len(core)]
    inner = core.rstrip(_EDGE_PUNCT)
    return lead + inner.translate(_LEET) + core[len(inner) :]


def strip_invisible(text: str) -> str:
    """NFKC and invisible characters removed, nothing else (for PII and secrets)."""
    if text.isascii():
        return text
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def join_spaced(text: str) -> str:
    """Join runs of single characters split by separators: "f u c k" -> "fuck"."""
    return _SPACED.sub(lambda m: _SEPARATORS.sub("", m.group(0)), text)


def fold_leet(normalized: str) -> str:
    """For word matching: spaced letters joined, then letters-for-digits/symbols undone."""
    joined = join_spaced(normalized)
    if not _MIXED.search(joined):  # no letter next to a digit or symbol: nothing to fold
        return joined
    return _LEETWORD.sub(_fold_word, joined)


@lru_cache(maxsize=1024)
def forms(text: str) -> tuple[str, str]:
    """(normalize(text), fold_leet(normalize(text))), cached: the blocklist, injection and
    profanity guards all look at the same message, usually at the same moment."""
    norm = normalize(text)
    return norm, fold_leet(norm)


# Above this many characters a guard's regex work can take tens of milliseconds;
# such texts are checked in a worker thread so the event loop keeps serving others.
LONG_TEXT_CHARS = 20_000


async def off_loop_if_long(fn: Callable[[str], T], text: str) -> T:
    """``fn(text)``, in a thread when the text is long enough to stall the event loop."""
    if len(text) < LONG_TEXT_CHARS:
        return fn(text)
    return await asyncio.to_thread(fn, text)
