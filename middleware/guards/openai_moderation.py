"""``openai_moderation``: the moderations endpoint, with per-category thresholds.

The endpoint is not a chat completion, so this guard talks to a
:class:`ModerationClient` (``moderate(text, model=, timeout_s=) -> {category:
score}``) rather than a ChatModel; :class:`OpenAIModeration` adapts the
official ``AsyncOpenAI`` client. Category names are compared in one canonical
form, so ``self_harm`` in config.toml matches the API's ``self-harm``; every
score is kept in the verdict's raw output for the audit.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import openai

from middleware.errors import LLMError, VerdictParseError
from middleware.guards.config import OpenAIModerationGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.llm_guard import skipped_verdict
from middleware.llm.openai_model import describe_error
from middleware.types import Verdict


class ModerationClient(Protocol):
    async def moderate(self, text: str, *, model: str, timeout_s: float) -> dict[str, float]: ...


def canonical(category: str) -> str:
    return category.strip().lower().replace("/", "_").replace("-", "_")


class OpenAIModeration:
    """A :class:`ModerationClient` over the official client (OpenAI or compatible servers)."""

    def __init__(self, client: Any) -> None:
        self.client = client  # openai.AsyncOpenAI

    async def moderate(self, text: str, *, model: str, timeout_s: float) -> dict[str, float]:
        try:
            # The raw body, not the client's model: new or odd categories stay as sent.
            response = await self.client.moderations.with_raw_response.create(
                input=text, model=model, timeout=timeout_s
            )
            body = response.text
        except openai.OpenAIError as exc:
            raise LLMError(describe_error(exc)) from exc
        try:
            data = json.loads(body)
        except ValueError:
            raise VerdictParseError("moderation response is not JSON", body[:500]) from None
        results = data.get("results") if isinstance(data, dict) else None
        scores = (
            results[0].get("category_scores") if results and isinstance(results[0], dict) else None
        )
        if not isinstance(scores, dict):
            raise VerdictParseError("moderation response has no category scores", body[:500])
        # null = a category this model does not score
        return {str(k): v for k, v in scores.items() if v is not None}


class OpenAIModerationGuard:
    local = False  # an HTTP call

    def __init__(self, cfg: OpenAIModerationGuardConfig, client: ModerationClient | None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client
        self.offline = client is None  # no provider configured: verdicts say "skipped"
        self.thresholds = {canonical(k): v for k, v in cfg.thresholds.items()}
        self.ignore = {canonical(k) for k in cfg.ignore}

    async def check(self, text: str, context: GuardContext) -> Verdict:
        if self.client is None:
            return skipped_verdict(self.name, context)
        scores = await self.client.moderate(
            text, model=self.cfg.model, timeout_s=self.cfg.timeout_s
        )
        raw = json.dumps(scores, sort_keys=True)
        checked: dict[str, float] = {}
        for name, score in scores.items():
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise VerdictParseError(f"score of {name!r} is not a number", raw)
            if not math.isfinite(score) or not 0 <= score <= 1:
                raise VerdictParseError(f"score of {name!r} is out of range", raw)
            if canonical(name) not in self.ignore:
                checked[name] = float(score)
        if not scores:
            raise VerdictParseError("moderation returned no category scores", raw)
        over = sorted(
            ((n, s) for n, s in checked.items() if s >= self._threshold(n)), key=lambda x: -x[1]
        )
        top = max(checked.values(), default=0.0)
        if over:
            reason = ", ".join(f"{n} {s:.2f} >= {self._threshold(n):g}" for n, s in over)
        else:
            reason = f"no category over its threshold (highest {top:.2f})"
        result = verdict(
            self.name,
            context,
            unsafe=bool(over),
            category=",".join(n for n, _ in over),
            score=round(over[0][1] if over else top, 4),
            reason=reason,
            raw=raw,
        )
        return result.model_copy(update={"model": self.cfg.model})

    def _threshold(self, category: str) -> float:
        return self.thresholds.get(canonical(category), self.cfg.threshold)
