"""``blocklist``: site-specific words, phrases and regexes that must not pass.

Words match as whole words (or phrases) after normalising both the list and
the text the same way: Unicode NFKC, zero-width characters removed,
homoglyphs mapped, accents stripped, leetspeak and spaced letters folded, and
each letter may repeat ("baaaad"). So ``pr0ject b1uebird``, ``p r o j e c t``
or a Cyrillic ``о`` all still hit "project bluebird". Regexes run
case-insensitively on the normalised text and on its folded form. All words
are compiled into one alternation once, at build time.
"""

from __future__ import annotations

import re
from itertools import groupby

from middleware.guards.config import BlocklistGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.normalize import fold_leet, forms, normalize, off_loop_if_long
from middleware.types import Verdict


def _word_regex(word: str) -> str:
    chunks = fold_leet(normalize(word.strip())).split()
    parts = []
    for j, chunk in enumerate(chunks):
        # Each letter may repeat; "1" folds to "i" but also stands for "l", so i/l are one.
        # A letter written n times is one repeat, "o{2,}", not "o+o+": side by side, two
        # repeats of one letter try every split of a run ("kill" was cubic on "kllll…").
        runs = [(item, list(chars)) for item, chars in groupby(chunk, key=_letter)]
        pattern = []
        for i, (item, chars) in enumerate(runs):
            n = len(chars)
            # A symbol beside the separator ("hey!", which the separator takes too) is
            # exact there: the same texts, without the separator splitting its run.
            beside = (i == 0 and j > 0) or (i == len(runs) - 1 and j < len(chunks) - 1)
            if beside and _SYMBOL.fullmatch(chars[0]):
                pattern.append(f"{item}{{{n}}}")
            else:
                pattern.append(item + ("+" if n == 1 else f"{{{n},}}"))
        parts.append("".join(pattern))
    return r"[\W_]*".join(parts) if len(parts) > 1 else parts[0]


_SYMBOL = re.compile(r"[\W_]")  # what the separator between words takes


def _letter(c: str) -> str:
    return "[il]" if c in "il" else re.escape(c)


def compile_words(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    # Longest first so a phrase wins over a word it contains; named group per index.
    ordered = sorted(range(len(words)), key=lambda i: -len(words[i]))
    alternation = "|".join(f"(?P<w{i}>{_word_regex(words[i])})" for i in ordered)
    return re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_])", re.IGNORECASE)


class BlocklistGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: BlocklistGuardConfig) -> None:
        self.name = cfg.name
        self.words = list(cfg.words)
        self.word_rx = compile_words(self.words)
        self.patterns = [re.compile(p, re.IGNORECASE) for p in cfg.patterns]

    def find(self, text: str) -> str | None:
        """What matched (for the reason), or None."""
        norm, folded = forms(text)
        if self.word_rx is not None:
            m = self.word_rx.search(folded)
            if m is not None and m.lastgroup is not None:
                return f"word {self.words[int(m.lastgroup[1:])]!r}"
        for i, rx in enumerate(self.patterns):
            if rx.search(norm) or (folded != norm and rx.search(folded)):
                return f"pattern #{i + 1}"
        return None

    async def check(self, text: str, context: GuardContext) -> Verdict:
        hit = await off_loop_if_long(self.find, text)
        return verdict(
            self.name,
            context,
            unsafe=hit is not None,
            category="blocklist" if hit else "",
            score=1.0 if hit else 0.0,
            reason=f"matched {hit}" if hit else "no blocklisted words",
        )
