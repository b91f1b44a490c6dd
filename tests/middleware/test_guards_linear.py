"""The offline guards' patterns take time linear in the text, and decide as the plain rules.

A pattern whose repeats can split the same run of characters in many ways
(``[a-z*#%]*[*#%][a-z*#%]*``, ``o+o+``) backtracks quadratically or worse, and
the regex engine holds the GIL while it does: the whole event loop stops and a
guard's timeout cannot fire. Each rewritten pattern is held here to the plain
rule it replaces (on the evaluation texts, cases at its edges and a seeded
random sample), and every offline guard is run on hostile inputs under a CPU
budget far above what they now take (tens of milliseconds) and far below what
the plain rules took (seconds to hours): a budget, not a timing measurement.
"""

from __future__ import annotations

import json
import random
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from middleware.guards.blocklist import BlocklistGuard
from middleware.guards.config import (
    BlocklistGuardConfig,
    PIIGuardConfig,
    ProfanityGuardConfig,
    PromptInjectionGuardConfig,
)
from middleware.guards.normalize import forms
from middleware.guards.pii import PIIGuard
from middleware.guards.profanity import _MASKED, ProfanityGuard, _unmask, load_model, load_words
from middleware.guards.prompt_injection import PromptInjectionGuard
from middleware.guards.secrets import find_secrets
from middleware.guards.spans import scan
from middleware.masking import mask_storable

REPO = Path(__file__).resolve().parents[2]


def eval_texts() -> list[str]:
    lines = (REPO / "tests/data/guard_eval.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def random_texts(alphabet: str, count: int, seed: int, longest: int = 24) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(longest + 1)))
        for _ in range(count)
    ]


# -- profanity: masked words ------------------------------------------------------------

PLAIN_MASKED = re.compile(r"(?<![\w*#])[a-z][a-z*#%]*[*#%][a-z*#%]*(?![\w*#])")


def mark_masked(m: re.Match[str]) -> str:
    word = m.group(0)
    return f"<{word}>" if any(c in "*#%" for c in word) else word


def test_masked_words_are_found_where_the_plain_rule_finds_them() -> None:
    edges = "f*ck|s**t you|a%|ab%|ab%cd|ab%c1|%ab*|Xab*c|a**a1|f*ck%|a*%b|ab*1|é*a|a*é|b*t_|*a*"
    sample = random_texts("ab*#%1A_ -é", 30_000, seed=3)
    for text in [*edges.split("|"), *sample, *(forms(t)[1] for t in eval_texts())]:
        assert _MASKED.sub(mark_masked, text) == PLAIN_MASKED.sub(mark_masked, text), text
    assert (
        _MASKED.sub(mark_masked, "you f*ck, s##t, ab%, ab%1") == "you <f*ck>, <s##t>, <ab%>, ab%1"
    )


def plain_unmask(token: str) -> str:
    """The rule as written before: a pattern per token, with [a-z] at each mask."""
    model, words = load_model(), load_words()
    shape = re.compile("".join("[a-z]" if c in "*#%" else re.escape(c) for c in token))
    for pool, least in ((model.offensive, 2), (words.masked_candidates, 1)):
        if sum(c.isalpha() for c in token) < least or (
            pool is not model.offensive and len(token) < 3
        ):
            continue
        found = next((w for w in pool if len(w) == len(token) and shape.fullmatch(w)), None)
        if found is not None:
            return found
    return token


def test_masked_words_resolve_to_the_words_the_shape_pattern_found() -> None:
    model, words = load_model(), load_words()
    rng = random.Random(9)
    tokens = ["f*ck", "s**t", "f******", "a*", "**", "*a*", "x" * 40 + "*", "ab%", "c#nt"]
    for word in [*model.offensive, *words.masked_candidates]:
        tokens.append("".join(rng.choice("*#%") if rng.random() < 0.4 else c for c in word))
    for token in tokens:
        assert _unmask(token, model, words) == plain_unmask(token), token


# -- every offline guard on hostile text, under a CPU budget ------------------------------

SIZE = 50_000  # characters: the plain rules took from seconds to hours on these
BUDGET_S = 3.0  # CPU seconds per guard and text; each now takes tens of milliseconds


def pumped(unit: str, tail: str = "", head: str = "") -> str:
    """``head``, then whole ``unit``s, then ``tail``: about SIZE characters."""
    return head + unit * ((SIZE - len(head) - len(tail)) // len(unit)) + tail


HOSTILE = {
    # profanity: masks and dashes standing for letters, never ending in a word boundary
    "a--1": pumped("a--", "1"),
    "ab*1": pumped("ab*", "1"),
    "a**1": pumped("a**", "1"),
    "a%_": pumped("a%", "_"),
    "a*#%1": pumped("a*#%", "1"),
}


@contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise TimeoutError once this process has spent ``seconds`` of CPU in here (the regex
    engine checks for signals, so a runaway match is stopped, not waited for)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"over {seconds} s of CPU")

    previous = signal.signal(signal.SIGVTALRM, expired)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


@pytest.fixture(scope="module")
def screens() -> dict[str, Callable[[str], object]]:
    """Each offline guard's synchronous work (what ``check`` runs, on or off the loop)."""
    blocklist = BlocklistGuard(
        BlocklistGuardConfig(
            name="b", kind="blocklist", words=["kys", "kill yourself", "bookkeeper", "hey!"]
        )
    )
    pii = PIIGuard(PIIGuardConfig(name="p", kind="pii"))
    injection = PromptInjectionGuard(PromptInjectionGuardConfig(name="i", kind="prompt_injection"))
    return {
        "profanity": ProfanityGuard(ProfanityGuardConfig(name="f", kind="profanity")).score,
        "prompt_injection": injection._score,
        "blocklist": blocklist.find,
        "pii": pii._scan,
        "secrets": lambda text: scan(find_secrets, text),
        "stored text": lambda text: mask_storable(text, True),
    }


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_offline_guard_stays_linear_on_hostile_text(
    case: str, screens: dict[str, Callable[[str], object]]
) -> None:
    text = HOSTILE[case]
    for name, screen in screens.items():
        forms.cache_clear()  # each guard pays for normalising, as the first one does
        with cpu_budget(BUDGET_S):
            try:
                screen(text)
            except TimeoutError:
                pytest.fail(f"{name} on {case!r}: over {BUDGET_S} s of CPU on {len(text)} chars")
