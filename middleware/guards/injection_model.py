"""The learned signal of ``prompt_injection``: a linear model over words and character 4-grams.

Patterns catch the phrasings someone wrote down; jailbreaks in the wild are
role-play essays that share vocabulary ("stay in character", "no filters",
"two responses") more than phrasing. A logistic regression over binary word,
word-pair and character 4-gram features learns that vocabulary from public
data (``benchmarks/guard_data/train_injection.py``, reproducible). The
weights ship as JSON and are scored here in pure Python: one set of features
per message, one dictionary lookup per feature, so a chat message costs tens
of microseconds. :func:`feature_kinds` is the one feature function: training
uses it (prefixed by kind, through :func:`features`) and so does scoring, so the
shipped weights mean the same thing at run time.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat
from pathlib import Path

MODEL_PATH = Path(__file__).resolve().parent / "models" / "prompt_injection.json"
_WORD = re.compile(r"[a-z0-9']+")
# Long texts are scored on their head and tail, where instructions usually sit.
_HEAD, _TAIL = 3000, 1000


# The three kinds of feature, by the prefix their weights are stored under.
_KINDS = ("w:", "b:", "c:")


def feature_kinds(folded: str) -> tuple[set[str], set[str], set[str]]:
    """Words, word pairs and char 4-grams of normalised, leet-folded text (unprefixed)."""
    if len(folded) > _HEAD + _TAIL:
        folded = folded[:_HEAD] + " " + folded[-_TAIL:]
    words = _WORD.findall(folded)
    joined = " " + " ".join(words) + " "
    return (
        set(words),
        {a + " " + b for a, b in zip(words, words[1:], strict=False)},
        {joined[i : i + 4] for i in range(len(joined) - 3)},
    )


def features(folded: str) -> set[str]:
    """Binary features of normalised, leet-folded text: words, word pairs, char 4-grams,
    prefixed by kind as their weights are stored (what training sees)."""
    kinds = feature_kinds(folded)
    return {prefix + f for prefix, kind in zip(_KINDS, kinds, strict=True) for f in kind}


@dataclass(frozen=True, slots=True)
class InjectionModel:
    """``P(injection | text) = sigmoid(bias + sum(weights of present features) / sqrt(n))``,
    where ``n`` is the number of features present (known or not).

    The weights are held per kind, unprefixed, so that scoring looks features up as
    :func:`feature_kinds` gives them instead of building a prefixed string for each."""

    bias: float
    weights_by_kind: tuple[dict[str, float], dict[str, float], dict[str, float]]

    @classmethod
    def from_weights(cls, bias: float, weights: dict[str, float]) -> InjectionModel:
        """From weights keyed as stored (``"w:word"``, ``"b:two words"``, ``"c:gram"``)."""
        words, pairs, grams = ({k[2:]: w for k, w in weights.items() if k[:2] == p} for p in _KINDS)
        return cls(bias, (words, pairs, grams))

    def probability(self, folded: str) -> float:
        words, pairs, grams = feature_kinds(folded)
        n = len(words) + len(pairs) + len(grams)
        if not n:
            return 1.0 / (1.0 + math.exp(-self.bias))
        by_word, by_pair, by_gram = self.weights_by_kind
        # fsum is exact whatever order the sets iterate in (that order changes with the
        # process's hash seed), so a replay scores a text exactly as the bot did.
        total = math.fsum(
            chain(
                map(by_word.get, words, repeat(0.0)),
                map(by_pair.get, pairs, repeat(0.0)),
                map(by_gram.get, grams, repeat(0.0)),
            )
        )
        z = self.bias + total / math.sqrt(n)
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0


@lru_cache(maxsize=1)
def load_injection_model(path: Path = MODEL_PATH) -> InjectionModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return InjectionModel.from_weights(float(data["bias"]), dict(data["weights"]))
