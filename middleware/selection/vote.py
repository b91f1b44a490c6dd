"""``vote``: majority over normalised answers, for short factual replies.

Answers are compared after normalisation (Unicode NFKC, casefold, punctuation
and extra whitespace removed, numbers in one canonical form: "1,000.50",
"1000.5" and "1.0005e3" agree, as do "Three" and "3"). The share of safe
candidates in the largest group is the confidence. Below ``min_confidence``,
or when two groups tie for the lead, the bot either says it is unsure (the
configured reply) or lets the chain fall back to the next method. No model
call is made, so a vote costs nothing beyond the candidates themselves.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal

from middleware.errors import SelectionConfigError
from middleware.selection.selector import SelectionOutcome, fastest
from middleware.types import Candidate, ChatRequest, Selection

_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]  # fmt: skip
_TENS = ["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS = {word: str(n) for n, word in enumerate(_WORDS)} | {
    word: str(n) for n, word in zip(range(30, 100, 10), _TENS, strict=True)
}
# A number: optional sign, digits with optional thousands commas, decimals, exponent.
_NUMBER = re.compile(
    r"(?<![\w.])([-+]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)([eE][-+]?\d{1,3})?(?![\w])"
)


def _canonical_number(sign: str, digits: str, exponent: str) -> str:
    try:
        value = Decimal(sign + digits.replace(",", "") + exponent)
    except InvalidOperation:
        return sign + digits + exponent
    if abs(value.adjusted()) > 30:  # keep absurd magnitudes compact and exact as written
        return f"{value.normalize():E}".lower()
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "+0") else text


def _strip_punctuation(text: str) -> str:
    # Punctuation becomes a space (not nothing) so "1,2,3" stays three tokens.
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def normalise_answer(text: str) -> str:
    """The form two answers must share to count as the same vote."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").casefold()
    parts: list[str] = []
    last = 0
    for match in _NUMBER.finditer(text):
        parts.append(_strip_punctuation(text[last : match.start()]))
        # A number stays one token; its own "." and "-" are not punctuation.
        parts.append(" " + _canonical_number(*match.groups(default="")) + " ")
        last = match.end()
    parts.append(_strip_punctuation(text[last:]))
    words = "".join(parts).split()
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


class VoteSelector:
    method = "vote"

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        on_low_confidence: Literal["unsure", "fallback"] = "unsure",
        unsure_reply: str = "I'm not sure about this one; my answers disagreed.",
    ) -> None:
        if not 0 <= min_confidence <= 1:
            raise SelectionConfigError("min_confidence must be between 0 and 1")
        if on_low_confidence not in ("unsure", "fallback"):
            raise SelectionConfigError("on_low_confidence must be 'unsure' or 'fallback'")
        self.min_confidence = min_confidence
        self.on_low_confidence = on_low_confidence
        self.unsure_reply = unsure_reply

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate]
    ) -> SelectionOutcome:
        if not candidates:
            return SelectionOutcome(None, Selection(method=self.method, reasoning="no candidates"))
        groups: dict[str, list[Candidate]] = {}
        for cand in sorted(candidates, key=lambda c: c.index):
            groups.setdefault(normalise_answer(cand.text), []).append(cand)
        # Largest group first; between equal groups the one holding the fastest reply.
        ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), fastest(kv[1]).latency_ms))
        answer, members = ranked[0]
        confidence = round(len(members) / len(candidates), 4)
        tied = len(ranked) > 1 and len(ranked[1][1]) == len(members)
        winner = fastest(members)
        selection = Selection(
            method=self.method,
            confidence=confidence,
            votes={key: [c.index for c in group] for key, group in groups.items()},
        )
        summary = (
            f"{len(members)} of {len(candidates)} answers agree on {answer[:80]!r} "
            f"(confidence {confidence:.2f}, minimum {self.min_confidence:.2f})"
        )
        scores = {
            c.index: round(len(group) / len(candidates), 4)
            for group in groups.values()
            for c in group
        }
        if confidence >= self.min_confidence and not tied:
            selection.reasoning = f"majority: {summary}; fastest of them: #{winner.index}"
            return SelectionOutcome(winner.index, selection, scores=scores)
        why = "confidence below minimum" if confidence < self.min_confidence else "tie for the lead"
        if self.on_low_confidence == "fallback":
            selection.reasoning = f"{why}: {summary}"
            return SelectionOutcome(None, selection, scores=scores)
        selection.reasoning = f"{why}, replied unsure: {summary}; plurality answer #{winner.index}"
        return SelectionOutcome(
            winner.index, selection, scores=scores, reply_override=self.unsure_reply
        )
