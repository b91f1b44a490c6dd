"""``max_length``: texts longer than ``max_chars`` are unsafe (cheap abuse stop)."""

from __future__ import annotations

from middleware.guards.config import MaxLengthGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.types import Verdict


class MaxLengthGuard:
    local = True  # CPU-only and fast: run inline, no task
    offline = False

    def __init__(self, cfg: MaxLengthGuardConfig) -> None:
        self.name = cfg.name
        self.max_chars = cfg.max_chars

    async def check(self, text: str, context: GuardContext) -> Verdict:
        length = len(text)
        unsafe = length > self.max_chars
        return verdict(
            self.name,
            context,
            unsafe=unsafe,
            category="length" if unsafe else "",
            score=min(1.0, length / self.max_chars),
            reason=f"{length} characters (limit {self.max_chars})",
        )
