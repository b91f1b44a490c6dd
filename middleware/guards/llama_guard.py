"""``llama_guard``: Llama Guard 3 or 4 behind any OpenAI-compatible server.

The server's chat template turns the conversation into Llama Guard's
classification prompt; the model answers in a fixed grammar, ``safe`` or
``unsafe`` + newline + a comma-separated list of hazard codes (S1..S14). That
grammar is parsed exactly: anything else, including unknown codes, is an
error (then ``on_error``). Codes are recorded with their names; codes listed
in ``exclude`` do not count. For the output stage the user's message goes
first, so the model judges the reply in context, as it was trained to.
"""

from __future__ import annotations

import re

from middleware.errors import VerdictParseError
from middleware.guards.config import LlamaGuardGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.llm_guard import LLMGuard, with_usage
from middleware.llm.model import ChatModel, Message, ModelSettings
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
_CODE = re.compile(r"S(?:[1-9]|1[0-4])")


def parse_llama_guard(raw: str) -> list[str]:
    """[] for ``safe``, the hazard codes for ``unsafe\\nS1,S2``; VerdictParseError otherwise."""
    # Servers often wrap the answer in blank lines; nothing else is tolerated.
    lines = raw.strip().split("\n")
    if lines == ["safe"]:
        return []
    if len(lines) != 2 or lines[0].strip() != "unsafe":
        raise VerdictParseError("expected 'safe' or 'unsafe' followed by hazard codes", raw)
    codes = [c.strip() for c in lines[1].split(",")]
    bad = [c for c in codes if not _CODE.fullmatch(c)]
    if bad:
        raise VerdictParseError(f"unknown hazard codes {bad}", raw)
    return list(dict.fromkeys(codes))


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

    async def judge_once(self, text: str, context: GuardContext, temperature: float) -> Verdict:
        settings = ModelSettings(
            temperature=temperature,
            max_tokens=24,
            timeout_s=self.cfg.timeout_s,
            model=self.cfg.model,
        )
        completion = await self.model.complete(self.messages(text, context), settings=settings)
        codes = parse_llama_guard(completion.text)
        counted = [c for c in codes if c not in self.exclude]
        named = ",".join(f"{c}:{HAZARDS[c]}" for c in codes)
        if not codes:
            reason = "safe"
        elif counted:
            reason = f"unsafe: {named}"
        else:
            reason = f"unsafe only in excluded categories: {named}"
        result = verdict(
            self.name,
            context,
            unsafe=bool(counted),
            category=",".join(f"{c}:{HAZARDS[c]}" for c in counted),
            score=1.0 if counted else 0.0,
            reason=reason,
            raw=completion.text,
        )
        return with_usage(result, completion)
