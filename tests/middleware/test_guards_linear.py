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

import random
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from middleware.guards.blocklist import BlocklistGuard, compile_words
from middleware.guards.config import (
    BlocklistGuardConfig,
    PIIGuardConfig,
    ProfanityGuardConfig,
    PromptInjectionGuardConfig,
)
from middleware.guards.normalize import _LEET, _LEETWORD, _fold_word, fold_leet, forms, normalize
from middleware.guards.pii import _PHONE_CANDIDATE, PIIGuard, _is_phone
from middleware.guards.profanity import _MASKED, ProfanityGuard, _unmask, load_model, load_words
from middleware.guards.prompt_injection import _COMPILED, PromptInjectionGuard
from middleware.guards.secrets import _NAME, find_secrets
from middleware.guards.spans import scan
from middleware.masking import mask_storable
from tests.middleware.test_guards_fast_paths import eval_texts, random_texts

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


# -- secrets: names assigned to a credential are not secrets ---------------------------

PLAIN_NAME = re.compile(r"[A-Za-z_]+(?:[._][A-Za-z_]+)+")


def every_text(alphabet: str, longest: int) -> Iterator[str]:
    texts = [""]
    for _ in range(longest):
        texts = [t + c for t in texts for c in alphabet]
        yield from texts


def test_dotted_and_snake_case_names_are_recognised_as_the_plain_rule_does() -> None:
    for text in [*every_text("aB_.1", 7), *random_texts("aB_._-1", 3000, seed=4, longest=30)]:
        assert bool(_NAME.fullmatch(text)) == bool(PLAIN_NAME.fullmatch(text)), text
    assert _NAME.fullmatch("settings.API_KEY") and _NAME.fullmatch("read_from_vault")
    assert not _NAME.fullmatch("_a") and not _NAME.fullmatch("a_") and not _NAME.fullmatch("a..b")


# -- blocklist: a letter written twice is one repeat -----------------------------------


def plain_compile_words(words: list[str]) -> re.Pattern[str]:
    """The words' pattern as built before: each character its own repeat."""

    def word_regex(word: str) -> str:
        chunks = fold_leet(normalize(word.strip())).split()
        return r"[\W_]*".join(
            "".join(("[il]" if c in "il" else re.escape(c)) + "+" for c in chunk)
            for chunk in chunks
        )

    ordered = sorted(range(len(words)), key=lambda i: -len(words[i]))
    alternation = "|".join(f"(?P<w{i}>{word_regex(words[i])})" for i in ordered)
    return re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_])", re.IGNORECASE)


def first_hit(rx: re.Pattern[str], text: str) -> tuple[int, str | None] | None:
    m = rx.search(text)
    return None if m is None else (m.start(), m.lastgroup)


def test_blocklist_words_match_where_the_plain_pattern_matched() -> None:
    words = ["kys", "kill yourself", "bookkeeper", "hey! you", "c++", "f__k", "a !b", "ill"]
    fast, plain = compile_words(words), plain_compile_words(words)
    assert fast is not None
    pieces = ["k", "i", "l", "ll", "y", "s", "o", "u", "r", "e", "f", "b", "ok", "ee", "p", "h",
              "!", "!!", " ", "_", "__", "-", "c", "+", "++", "a", "x", "1", "\n"]  # fmt: skip
    rng = random.Random(12)
    sample = [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14))) for _ in range(20_000)
    ]
    for text in [*sample, *(forms(t)[1] for t in eval_texts()), "kiiiill yourself", "hey!!  you"]:
        assert first_hit(fast, text) == first_hit(plain, text), text
    assert sum(first_hit(fast, t) is not None for t in sample) > 100  # the sample hits, too


# -- prompt injection: a role tag at a line's start ------------------------------------

ROLE_TAG = next(rx for rule, *_, rx in _COMPILED if rule == "fake_role_tag")
PLAIN_ROLE_TAG = re.compile(ROLE_TAG.pattern.replace(r"[^\S\n]*", r"\s*"), re.IGNORECASE)


def test_role_tags_are_found_where_the_plain_pattern_found_them() -> None:
    assert PLAIN_ROLE_TAG.pattern != ROLE_TAG.pattern
    pieces = ["\n", " ", "\t", "\r", "\u2028", "system", "assistant", "instruction", ":",
              "##", "#", "override", "message", "x", "<|im_start|>", "[inst]"]  # fmt: skip
    rng = random.Random(5)
    sample = [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 10))) for _ in range(20_000)
    ]
    for text in [*sample, *eval_texts()]:
        for form in forms(text):
            assert bool(ROLE_TAG.search(form)) == bool(PLAIN_ROLE_TAG.search(form)), form
    assert sum(bool(ROLE_TAG.search(t)) for t in sample) > 2000


# -- leet folding: "!", "|" and "+" at a word's edges stay ------------------------------

PLAIN_EDGE_PUNCT = re.compile(r"^([!|+]*)(.*?)([!|+]*)$", re.DOTALL)


def plain_fold_word(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.isalpha() or not any(c.isalpha() for c in word):
        return word
    lead, core, trail = PLAIN_EDGE_PUNCT.match(word).groups()  # type: ignore[union-attr]
    return lead + core.translate(_LEET) + trail


def test_leet_words_keep_their_edge_punctuation_as_the_plain_pattern_did() -> None:
    for text in [*random_texts("a1!|+ 3$b", 20_000, seed=8), *eval_texts()]:
        assert _LEETWORD.sub(_fold_word, text) == _LEETWORD.sub(plain_fold_word, text), text


# -- pii: a parenthesis and the space after it --------------------------------------------

PLAIN_PHONE = re.compile(
    _PHONE_CANDIDATE.pattern.replace(
        r"(?:(?:[ .\-/]|(?>[()] ?)|\d){5,24}|(?:[ .\-/]|[()] ?|\d){5,8})",
        r"(?:[ .\-/]|[()] ?|\d){5,24}",
    )
)
REGIONS = ("US", "GB", "DE", "FR", "SE")


def phones(rx: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in rx.finditer(text) if _is_phone(m[0].strip(), REGIONS, True)]


def test_phone_numbers_are_found_where_the_plain_pattern_found_them() -> None:
    assert PLAIN_PHONE.pattern != _PHONE_CANDIDATE.pattern
    pieces = ["0", "00", "1", "2", "4", "5", "7", "9", "415", "555", "0100", "( ", ") ", "(", ")",
              " ", "-", ".", "/", "+", "+1 ", "x", " ext. 12", "#"]  # fmt: skip
    rng = random.Random(7)
    sample = [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 16))) for _ in range(20_000)
    ]
    for text in [
        *sample,
        *eval_texts(),
        "001( 2345",
        " ext. 12( /-4 ext. 120054)4-2",
        "call (415) 555-0100 or +1 (415) 555 0100",
    ]:
        assert phones(_PHONE_CANDIDATE, text) == phones(PLAIN_PHONE, text), text
    assert sum(bool(phones(_PHONE_CANDIDATE, t)) for t in sample) > 1000


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
    # secrets: a value assigned to a credential's name, that is no dotted or snake_case name
    "password = a_a_…1": pumped("password = " + "a_" * 40 + "1 "),
    # blocklist: a letter its words repeat ("kill", "bookkeeper"), a symbol by a separator
    "kllll…x": pumped("l", "x", head="k"),
    "boooo…x": pumped("o", "x", head="b"),
    "hey!!!…x": pumped("!", "x", head="hey"),
    # prompt injection: blank lines before a role tag that never comes
    "\\n…system": pumped("\n", "system"),
    "\\n \\n…##": pumped("\n \t", "##"),
    # leet folding: a word whose inside is all "!"
    "a!!!…b": pumped("!", "b", head="a"),
    "a|+!…1b": pumped("|+!", "1b", head="a"),
    # pii: parentheses and spaces inside a number that never ends in a digit
    "1( ( … x": pumped("1" + "( " * 14 + "x "),
    "(1) (1) …": pumped("(1) "),
    "a@a.a…": pumped("a.", "-", head="x@"),
    "a dot a at": pumped("a dot a at "),
    "spaces": pumped(" ", "b", head="a"),
    "digits": pumped("1 "),
    "+1 (": pumped("+1 ("),
    # secrets: prefixes of every key shape, never completed
    "sk-…": pumped("sk-"),
    "token=…": pumped("token="),
    "-----BEGIN …": pumped("-----BEGIN A "),
    "eyJ…": pumped("eyJaaaaaaaaaa."),
    "M…": pumped("M" + "a" * 24 + "."),
    # normalising: invisible, full-width and look-alike characters
    "zero-width": pumped("a\u200b"),
    "tag characters": pumped("a\U000e0020"),
    # masking through invisibles: findings of the plain form mapped back onto the text
    "split keys": pumped("sk-proj-Ab3dEf6hIj9kLm2n\u200bOp5qRs8tUv1wXy4z "),
    "a zero-width run in a key": pumped("\u200b", "Op5qRs8tUv1wXy4z", head="sk-proj-Ab3dEf6h"),
    "full-width cards": pumped("４１１１ １１１１ １１１１ １１１１ "),
    "keys in groups": pumped("sk-proj- Ab3dEf6h Ij9kLm2n Op5qRs8t "),
    "full-width": pumped("ｆ"),
    "you ": pumped("you "),
    "ignore!!": pumped("ignore" + "!" * 50 + " "),
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
