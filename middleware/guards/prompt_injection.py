"""``prompt_injection``: instruction overrides, jailbreak role play, prompt extraction.

Each rule is a precompiled pattern with a weight (how sure one match alone
makes us); the score combines the matched weights as independent evidence,
``1 - prod(1 - w)``, so one strong signal ("ignore all previous instructions")
blocks on its own while weak ones ("from now on", "stay in character") only
block together. A learned model (:mod:`middleware.guards.injection_model`)
is the other signal: the score is the larger of the two, so role-play
jailbreaks that no pattern names are caught too. Both run on normalised text (homoglyphs, zero-width
characters, spaced letters and leetspeak undone), so obfuscation does not help.
"""

from __future__ import annotations

import re

from middleware.guards.config import PromptInjectionGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.injection_model import load_injection_model
from middleware.guards.normalize import forms, off_loop_if_long
from middleware.types import Verdict

_PREV = (
    r"(?:previous|prior|preceding|above|earlier|former|initial|original|all|any|your|the|"
    r"these|those|system|developer)"
)
_INSTR = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints|"
    r"commands|orders|programming|context)"
)
_MODEL = r"(?:ai|assistant|chatbot|bot|model|llm|gpt|chatgpt|claude|you)"

# (rule, category, weight, pattern)
RULES: tuple[tuple[str, str, float, str], ...] = (
    # Instruction override
    ("ignore_instructions", "instruction_override", 0.95,
     rf"\b(?:ignore|disregard|forget|skip|bypass|override|drop|abandon|neglect)\b(?:\W+\w+){{0,3}}?\W+{_PREV}\W+(?:\w+\W+){{0,2}}?{_INSTR}\b"),
    ("forget_everything", "instruction_override", 0.8,
     r"\bforget\b\W+(?:everything|all)\W+(?:(?:you\W+(?:were|have\s+been|know)\W+(?:told|taught|trained))|(?:above|before|so\s+far|previously))"),
    ("ignore_above", "instruction_override", 0.7,
     r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?|everything\s+)?(?:the\s+|that\s+)?(?:above|previous|prior)(?=\s*(?:[,.;:!]|and\b|then\b|$))"),
    ("no_longer_bound", "instruction_override", 0.85,
     r"\byou\s*(?:are|'re|re)\s+(?:now\s+)?(?:no\s+longer|not)\s+(?:bound|restricted|limited|constrained|governed)\s+by\b"),
    ("break_the_rules", "instruction_override", 0.6,
     r"\b(?:let'?s|let\s+us|we\s+(?:can|will)|you\s+(?:can|will|must))\s+(?:break|ignore|bend|bypass)\s+(?:the|all|your|these)\s+rules\b"),
    ("new_instructions", "instruction_override", 0.55,
     r"(?:^|\n|\W)(?:new|updated|real|actual|true)\s+(?:system\s+)?(?:instructions?|rules|prompt)\s*(?::|are\b|is\b)"),
    ("override_safety", "instruction_override", 0.85,
     r"\b(?:override|disable|turn\s+off|deactivate|remove|bypass|ignore|skip|suspend)\b\W+(?:your|the|all|any)\W+(?:\w+\W+)?(?:safety|content|ethical|moral|security)?\W*(?:filters?|guardrails|restrictions|safeguards|guidelines|policies|alignment|checks|protections)\b"),
    ("from_now_on", "instruction_override", 0.35,
     r"\b(?:from\s+now\s+on|for\s+the\s+rest\s+of\s+(?:this|the)\s+conversation)\b\W+(?:you|your|only|always|never|respond|answer|reply|act)"),
    ("do_not_refuse", "instruction_override", 0.45,
     r"\b(?:never|do\s+not|don't|dont|must\s+not|cannot|can't)\s+(?:refuse|decline|say\s+no|apologi[sz]e|warn)\b"),
    # A line's start: "\s*" there went on over the lines after it, so each newline of a
    # long run of them rescanned the rest (quadratic); the last newline finds the same.
    ("fake_role_tag", "instruction_override", 0.7,
     r"(?:^|\n)[^\S\n]*system\s+(?:override|message|update)\s*:|<\|?(?:im_start|im_end|system|endoftext|eot_id|start_header_id)\|?>|\[/?(?:inst|sys|system|admin|developer)\]|<</?sys>>|(?:^|\n)[^\S\n]*#{2,}\s*(?:system|instruction)s?\s*:?|(?:^|\n)[^\S\n]*(?:system|assistant)\s*:\s"),
    # Jailbreak role play
    ("dan", "jailbreak", 0.9,
     r"\b(?:you\s+are\s+(?:now\s+)?dan|do\s+anything\s+now|dan\s+mode|jailbreak(?:ed)?\s+mode|stan\s+mode|evil\s+confidant|aim\s+mode)\b"),
    # Phones have a developer mode too; alone it is weak, with other signals it is not.
    ("developer_mode", "jailbreak", 0.4, r"\bdeveloper\s+mode\b"),
    ("no_restrictions_persona", "jailbreak", 0.85,
     r"\b(?:pretend|imagine|act|behave|roleplay|role-play|respond|answer|you\s+are|you\s+(?:now\s+)?have)\b(?:\W+\w+){0,8}?\W+(?:no|without|free\s+(?:of|from)|zero|any)\W+(?:\w+\W+)?(?:restrictions|limits|limitations|filters?|rules|guidelines|censorship|ethics|morals|boundaries|safeguards|policies)\b"),
    ("escaped_persona", "jailbreak", 0.8,
     r"\b(?:escaped|broken\s+free\s+(?:of|from)|broke\s+free\s+(?:of|from)|freed\s+from|liberated\s+from|unshackled\s+from)\s+(?:its|your|their|the|all|any)\s+(?:\w+\s+)?(?:guidelines|rules|restrictions|programming|constraints|filters|training|shackles)\b"),
    ("unfiltered_ai", "jailbreak", 0.8,
     rf"\b(?:unfiltered|uncensored|unrestricted|unaligned|jailbroken|amoral|unethical|evil)\W+(?:\w+\W+)?{_MODEL}\b"),
    ("hypothetical_bypass", "jailbreak", 0.4,
     r"\b(?:hypothetically|in\s+a\s+fictional\s+world|for\s+a\s+(?:story|novel)|purely\s+for\s+research)\b(?:\W+\w+){0,12}?\W+(?:no\s+(?:rules|restrictions|laws)|illegal|without\s+(?:rules|restrictions))"),
    ("stay_in_character", "jailbreak", 0.3,
     r"\b(?:stay|remain)\s+in\s+character\b|\bbreak(?:ing)?\s+character\b"),
    ("two_responses", "jailbreak", 0.45,
     r"\b(?:two|2)\s+(?:responses|answers|replies)\b(?:\W+\w+){0,12}?\W+(?:unfiltered|jailbroken|normal|classic|dan)\b"),
    # System prompt extraction
    ("reveal_prompt", "prompt_extraction", 0.9,
     r"\b(?:reveal|show|print|display|output|repeat|recite|dump|leak|tell\s+me|give\s+me|share|write\s+out|spell\s+out|what\s+(?:is|are|was|were))\b(?:\W+\w+){0,4}?\W+(?:your|the|its)\W+(?:\w+\W+)?(?:system|initial|original|hidden|secret|internal|developer|pre-?)\W*(?:prompt|instructions?|message|rules|configuration)\b"),
    ("repeat_above", "prompt_extraction", 0.75,
     r"\b(?:repeat|print|output|copy|recite|echo)\b(?:\W+\w+){0,4}?\W+(?:words|text|everything|all|content|lines)\W+(?:above|before\s+this|that\s+came\s+before|preceding|prior\s+to)\b"),
    ("what_told", "prompt_extraction", 0.6,
     rf"\bwhat\s+(?:were|was)\s+(?:you|the\s+{_MODEL})\s+(?:told|instructed|programmed|given)\b(?:\W+\w+){{0,3}}?\W+(?:before|at\s+the\s+start|initially|first)\b"),
    ("begin_with", "prompt_extraction", 0.55,
     r"\b(?:starting|beginning|begin|start)\s+with\s+(?:the\s+words\s+)?[\"'“]?you\s+are\b"),
)  # fmt: skip

# Substrings each rule cannot match without; most messages contain none of a
# rule's anchors, so that rule's regex is never run on them.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "ignore_instructions": (
        "ignor",
        "disregard",
        "forget",
        "skip",
        "bypass",
        "overrid",
        "drop",
        "abandon",
        "neglect",
    ),
    "forget_everything": ("forget",),
    "ignore_above": ("ignor", "disregard", "forget"),
    "no_longer_bound": ("bound", "restrict", "limit", "constrain", "govern"),
    "break_the_rules": ("rules",),
    "new_instructions": ("instruction", "rules", "prompt"),
    "override_safety": (
        "filter",
        "guardrail",
        "restriction",
        "safeguard",
        "guideline",
        "polic",
        "alignment",
        "check",
        "protection",
    ),
    "from_now_on": ("now", "rest"),
    "do_not_refuse": ("refuse", "decline", "say", "apologi", "warn"),
    "fake_role_tag": ("system", "<", "[", "#", "assistant"),
    "dan": ("dan", "do anything", "jailbr", "stan", "evil", "aim"),
    "developer_mode": ("developer",),
    "no_restrictions_persona": (
        "restriction",
        "limit",
        "filter",
        "rules",
        "guideline",
        "censor",
        "ethic",
        "moral",
        "boundar",
        "safeguard",
        "polic",
    ),
    "escaped_persona": ("escaped", "free", "liberated", "unshackled"),
    "unfiltered_ai": (
        "unfiltered",
        "uncensored",
        "unrestricted",
        "unaligned",
        "jailbroken",
        "amoral",
        "unethical",
        "evil",
    ),
    "hypothetical_bypass": ("hypothetic", "fiction", "story", "novel", "research"),
    "stay_in_character": ("character",),
    "two_responses": ("responses", "answers", "replies"),
    "reveal_prompt": ("prompt", "instruction", "message", "rules", "configuration"),
    "repeat_above": ("above", "before", "preceding", "prior"),
    "what_told": ("told", "instructed", "programmed", "given"),
    "begin_with": ("you",),
}
_COMPILED = tuple(
    (rule, category, weight, frozenset(_ANCHORS[rule]), re.compile(pattern, re.IGNORECASE))
    for rule, category, weight, pattern in RULES
)
# Each anchor is looked for once per text, not once per rule that names it.
_ALL_ANCHORS = tuple(sorted({a for anchors in _ANCHORS.values() for a in anchors}))


def score_injection(
    text: str,
    extra: tuple[re.Pattern[str], ...] = (),
    extra_weight: float = 0.6,
    *,
    learned: bool = True,
) -> tuple[float, list[tuple[str, str]]]:
    """(score 0..1, [(rule, category), ...]) for ``text``; ``learned=False``: patterns only."""
    norm, folded = forms(text)
    variants = (norm,) if folded == norm else (norm, folded)
    present = {a for a in _ALL_ANCHORS if a in norm}
    if folded != norm:
        present.update(a for a in _ALL_ANCHORS if a in folded)
    matched: list[tuple[str, str]] = []
    remaining = 1.0
    for rule, category, weight, anchors, rx in _COMPILED:
        if not present.isdisjoint(anchors) and any(rx.search(v) for v in variants):
            matched.append((rule, category))
            remaining *= 1.0 - weight
    for i, rx in enumerate(extra):
        if any(rx.search(v) for v in variants):
            matched.append((f"extra_{i + 1}", "custom"))
            remaining *= 1.0 - extra_weight
    score = 1.0 - remaining
    if learned:
        probability = load_injection_model().probability(folded)
        if probability > score:
            matched.append(("learned_model", "learned"))
            score = probability
    return round(score, 4), matched


class PromptInjectionGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: PromptInjectionGuardConfig) -> None:
        self.name = cfg.name
        self.threshold = cfg.threshold
        self.extra = tuple(re.compile(p, re.IGNORECASE) for p in cfg.extra_patterns)
        self.extra_weight = cfg.extra_weight

    def _score(self, text: str) -> tuple[float, list[tuple[str, str]]]:
        return score_injection(text, self.extra, self.extra_weight)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        score, matched = await off_loop_if_long(self._score, text)
        unsafe = score >= self.threshold
        categories = sorted({c for _, c in matched})
        reason = (
            f"score {score:.2f} (threshold {self.threshold:g}) from "
            + ", ".join(r for r, _ in matched)
            if matched
            else "no injection patterns"
        )
        return verdict(
            self.name,
            context,
            unsafe=unsafe,
            category=("prompt_injection:" + ",".join(categories)) if matched else "",
            score=score,
            reason=reason,
        )
