"""The offline guards' shortcuts decide exactly as the plain rules they stand for.

Profanity matches a message's words against the rated list with set operations
and looks phrases up only from a word that starts one; ``allow_words`` are tried
as substrings before their regex runs; the learned injection model sums its
weights exactly. Each test holds a shortcut to the plain rule (or, for the sum,
to one answer whatever the process's hash seed), on the evaluation texts and
on cases made to sit at the edges of the shortcut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from middleware.guards.config import ProfanityGuardConfig
from middleware.guards.normalize import forms
from middleware.guards.profanity import _WORD as WORD
from middleware.guards.profanity import ProfanityGuard, load_words

REPO = Path(__file__).resolve().parents[2]


def eval_texts() -> list[str]:
    lines = (REPO / "tests/data/guard_eval.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def plain_worst(folded: str) -> float:
    """The rule as stated: the highest rating of any run of words that is a listed
    term, a single word also counting as its singular when it ends in "s"."""
    ratings = load_words().ratings
    longest = max(key.count(" ") + 1 for key in ratings)
    words = WORD.findall(folded)
    found = [0.0]
    for n in range(1, longest + 1):
        for i in range(len(words) - n + 1):
            key = " ".join(words[i : i + n])
            rating = ratings.get(key)
            if rating is None and n == 1 and len(key) > 4 and key.endswith("s"):
                rating = ratings.get(key[:-1])
            found.append(rating or 0.0)
    return max(found)


def test_rated_words_and_phrases_are_found_as_the_plain_rule_finds_them() -> None:
    edges = [
        "oral sex",  # a phrase
        "you ape shit",  # a phrase at the end, after a word that starts none
        "ape",  # a phrase's first word alone
        "arse bandits everywhere",  # the longer of two phrases sharing a start
        "skanks and orgasms",  # plurals the list lacks
        "shits",  # a plural the list has: its own rating, not the singular's
        "bass class",  # "ass" inside words is no word
        "",
    ]
    texts = [*edges, *eval_texts()]
    words = load_words()
    for text in texts:
        folded = forms(text)[1]
        assert words.worst(folded) == plain_worst(folded), text
    assert words.worst("oral sex") > 0.0 and words.worst("bass class") == 0.0


def test_allow_words_are_removed_exactly_where_their_regex_matches() -> None:
    cfg = ProfanityGuardConfig(
        name="p", kind="profanity", allow_words=["hell", "kill", "shoot", "dummy"]
    )
    guard = ProfanityGuard(cfg)
    assert guard._allowed is not None
    texts = [
        "What the HELL happened?",
        "shell scripts kill -9",  # "hell" inside a word: a substring, but no match
        "\u212aill it",  # the Kelvin sign matches "k" case-insensitively (non-ASCII text)
        "Shoot me a message, dummy",
        "nothing allowed here",
        *eval_texts(),
    ]
    for text in texts:
        assert guard._without_allowed(text) == guard._allowed.sub(" ", text), text


def test_the_learned_injection_score_does_not_depend_on_the_hash_seed() -> None:
    # Sets of features iterate in an order set by the hash seed; a plain sum then
    # differs in the last bits from process to process (a replay could round a
    # score differently from the bot). fsum gives one answer.
    code = (
        "import json, sys\n"
        "from middleware.guards.injection_model import load_injection_model\n"
        "from middleware.guards.normalize import forms\n"
        "model = load_injection_model()\n"
        "texts = json.load(sys.stdin)\n"
        "print(json.dumps([model.probability(forms(t)[1]).hex() for t in texts]))\n"
    )
    texts = json.dumps(eval_texts()[:200])
    answers = set()
    for seed in ("1", "2", "3"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=texts,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        answers.add(out.stdout)
    assert len(answers) == 1
