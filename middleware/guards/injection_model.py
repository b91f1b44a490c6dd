"""The learned signal of ``prompt_injection``: a linear model over words and character 4-grams.

Patterns catch the phrasings someone wrote down; jailbreaks in the wild are
role-play essays that share vocabulary ("stay in character", "no filters",
"two responses") more than phrasing. A logistic regression over binary word,
word-pair and character 4-gram features learns that vocabulary from public
data (``benchmarks/guard_data/train_injection.py``, reproducible). The
weights ship as JSON and are scored here in pure Python: one set of features
per message, one dictionary lookup per feature, so a chat message costs tens
of microseconds. :func:`features` is the one feature function; training uses
it too, so the shipped weights mean the same thing at run time.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODEL_PATH = Path(__file__).resolve().parent / "models" / "prompt_injection.json"
_WORD = re.compile(r"[a-z0-9']+")
# Long texts are scored on their head and tail, where instructions usually sit.
_HEAD, _TAIL = 3000, 1000


def features(folded: str) -> set[str]:
    """Binary features of normalised, leet-folded text: words, word pairs, char 4-grams."""
    if len(folded) > _HEAD + _TAIL:
        folded = folded[:_HEAD] + " " + folded[-_TAIL:]
    words = _WORD.findall(folded)
    out = {"w:" + w for w in words}
    out.update("b:" + a + " " + b for a, b in zip(words, words[1:], strict=False))
    joined = " " + " ".join(words) + " "
    out.update("c:" + joined[i : i + 4] for i in range(len(joined) - 3))
    return out


@dataclass(frozen=True, slots=True)
class InjectionModel:
    """``P(injection | text) = sigmoid(bias + sum(weights of present features) / sqrt(n))``,
    where ``n`` is the number of features present (known or not)."""

    bias: float
    weights: dict[str, float]

    def probability(self, folded: str) -> float:
        feats = features(folded)
        if not feats:
            return 1.0 / (1.0 + math.exp(-self.bias))
        get = self.weights.get
        total = sum(get(f, 0.0) for f in feats)
        z = self.bias + total / math.sqrt(len(feats))
        return 1.0 / (1.0 + math.exp(-z)) if z > -30 else 0.0


@lru_cache(maxsize=1)
def load_injection_model(path: Path = MODEL_PATH) -> InjectionModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return InjectionModel(bias=float(data["bias"]), weights=dict(data["weights"]))
