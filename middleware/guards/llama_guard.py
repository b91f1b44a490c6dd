"""``llama_guard``: Llama Guard 3 or 4 behind any OpenAI-compatible server.

The server's chat template turns the conversation into Llama Guard's
classification prompt; the model answers in a fixed grammar, ``safe`` or
``unsafe`` + newline + a comma-separated list of hazard codes (S1..S14). The
two answers are read asymmetrically, because only one direction can fail
open: ``safe`` must be exactly that word (else an error, then ``on_error``),
while an answer with a line that starts or ends with the word ``unsafe`` (any
case or spacing, in markdown emphasis or backticks, after ``safe`` on an
earlier line) always counts as unsafe. Codes that do not fit the grammar (``S99``,
a missing code line, prose after it) do not turn that judgement into an error
a fail-open guard would let through; they are recorded in the reason, unknown
codes as ``unknown:S99``. Codes listed in ``exclude`` do not count. For the
output stage the user's message goes first, so the model judges the reply in
context, as it was trained to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from middleware.errors import VerdictParseError
from middleware.guards.config import LlamaGuardGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.llm_guard import LLMGuard
from middleware.llm.model import MAX_ANSWER_CHARS, ChatModel, Message, ModelSettings
from middleware.types import Stage, Verdict

HAZARDS = {
    "S1": "violent_crimes",
    "S2": "non_violent_crimes",
    "S3": "sex_related_crimes",
    "S4": "child_sexual_exploitation",
    "S5": "defamation",
    "S6": "specialized_advice",
    "S7": "privacy",
    "S8": "intellectual_property",
    "S9": "indiscriminate_weapons",
    "S10": "hate",
    "S11": "suicide_self_harm",
    "S12": "sexual_content",
    "S13": "elections",
    "S14": "code_interpreter_abuse",
}
# Markdown emphasis and code marks are dropped before reading a line; a line says
# unsafe when its first word (after quotes, bullets, headings) or its last is "unsafe".
_MARKUP = str.maketrans("", "", "*_`")
_UNSAFE_FIRST = re.compile(r"""[\s"'>#(\[-]*unsafe\b""", re.IGNORECASE)
_UNSAFE_LAST = re.compile(r"\bunsafe\W*$", re.IGNORECASE)
_TOKEN = re.compile(r"[^,\s]+")
_CODE_LIKE = re.compile(r"S\d{1,3}")
_TOKENS_SHOWN = 5  # unknown codes and junk tokens kept: a hostile answer can list thousands


@dataclass(frozen=True, slots=True)
class LlamaAnswer:
    """What a Llama Guard answer says. ``codes`` are known hazards in the order
    given; ``unknown`` are code-like tokens outside S1..S14; ``problem`` is set
    when an unsafe answer did not follow the grammar (it still counts as unsafe)."""

    unsafe: bool
    codes: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    problem: str | None = None


def parse_llama_guard(raw: str) -> LlamaAnswer:
    """Read ``safe`` / ``unsafe\\nS1,S2``; VerdictParseError for anything that is neither."""
    if len(raw) > MAX_ANSWER_CHARS:
        raise VerdictParseError(f"reply too long ({len(raw)} characters)", raw)
    lines = [line.strip() for line in raw.split("\n") if line.strip()]
    if lines == ["safe"]:
        return LlamaAnswer(unsafe=False)
    plain = [line.translate(_MARKUP).strip() for line in lines]
    hits = ((at, said) for at, line in enumerate(plain) if (said := _says_unsafe(line)))
    at, said = next(hits, (0, None))
    if said is None:
        raise VerdictParseError("expected 'safe' or 'unsafe' followed by hazard codes", raw)
    line = plain[at]
    problems = []
    if at or said.start():
        problems.append("text before 'unsafe'")
    elif lines[at] != line or said.end() != len("unsafe"):
        problems.append("markup around 'unsafe'")
    # The codes follow on the next line; a model that kept them on the first line
    # ("unsafe S1") is read the same way, but is not the grammar.
    rest = line[said.end() :].strip()
    after = plain[at + 1 :]
    code_line, extra = (rest, after) if rest else (after[0] if after else "", after[1:])
    codes: list[str] = []
    unknown: list[str] = []
    junk: list[str] = []
    for token in _TOKEN.findall(code_line):
        code = token.upper()
        if code in HAZARDS:
            codes.append(code)
        elif _CODE_LIKE.fullmatch(code):
            unknown.append(code)
        else:
            junk.append(token[:20])
    if not code_line:
        problems.append("no hazard codes")
    if rest:
        problems.append("text after 'unsafe' on its line")
    unknown = list(dict.fromkeys(unknown))[:_TOKENS_SHOWN]
    if unknown:
        problems.append(f"unknown hazard codes {','.join(unknown)}")
    if code_line and (junk or code_line.count(",") != len(_TOKEN.findall(code_line)) - 1):
        problems.append(f"not a list of codes: {' '.join(junk[:_TOKENS_SHOWN]) or code_line[:40]}")
    if extra:
        problems.append("text after the hazard codes")
    return LlamaAnswer(
        unsafe=True,
        codes=tuple(dict.fromkeys(codes)),
        unknown=tuple(unknown),
        problem="; ".join(problems) or None,
    )


def _says_unsafe(line: str) -> re.Match[str] | None:
    return _UNSAFE_FIRST.match(line) or _UNSAFE_LAST.search(line)


class LlamaGuard(LLMGuard):
    def __init__(self, cfg: LlamaGuardGuardConfig, model: ChatModel) -> None:
        super().__init__(cfg, model)
        self.cfg = cfg
        self.exclude = frozenset(cfg.exclude)

    def messages(self, text: str, context: GuardContext) -> list[Message]:
        if context.stage is Stage.OUTPUT:
            prompt = context.request.text or "(no user message)"
            return [Message("user", prompt), Message("assistant", text)]
        return [Message("user", text)]

    def request(
        self, text: str, context: GuardContext, temperature: float
    ) -> tuple[list[Message], ModelSettings]:
        settings = ModelSettings(
            temperature=temperature,
            max_tokens=24,
            timeout_s=self.cfg.timeout_s,
            model=self.cfg.model,
        )
        return self.messages(text, context), settings

    def read(self, answer_text: str, text: str, context: GuardContext) -> Verdict:
        answer = parse_llama_guard(answer_text)
        counted = [c for c in answer.codes if c not in self.exclude]
        named = [f"{c}:{HAZARDS[c]}" for c in counted] + [f"unknown:{c}" for c in answer.unknown]
        excluded = ",".join(f"{c}:{HAZARDS[c]}" for c in answer.codes if c in self.exclude)
        # Excluded codes are the operator's call even in a malformed answer; an unsafe
        # answer that names nothing else still blocks, as "unknown".
        unsafe = bool(named) or (answer.unsafe and not excluded)
        if not answer.unsafe:
            reason = "safe"
        elif not unsafe:
            reason = f"unsafe only in excluded categories: {excluded}"
        else:
            reason = "unsafe: " + (",".join(named) or "no hazard code")
        if answer.problem:
            reason = f"unparseable answer that says unsafe ({answer.problem}); " + reason
        return verdict(
            self.name,
            context,
            unsafe=unsafe,
            category=",".join(named) or ("unknown" if unsafe else ""),
            score=1.0 if unsafe else 0.0,
            reason=reason,
            raw=answer_text,
        )
