"""``first``, as a selector: the fastest safe candidate, which never fails.

The pipeline runs the real ``first`` itself (it cancels the slower candidates
as soon as one passes). This selector is the last link of every fallback
chain: when a judge cannot be parsed or a vote is too split to trust, the bot
still answers, with the reply that would have won the race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from middleware.selection.selector import SelectionOutcome
from middleware.types import Candidate, ChatRequest, Selection

if TYPE_CHECKING:
    from middleware.pipeline.policy import PipelinePolicy


def fastest(candidates: Sequence[Candidate]) -> Candidate:
    """Lowest latency; the lower index breaks exact ties so the result is stable."""
    return min(candidates, key=lambda c: (c.latency_ms, c.index))


class FirstSelector:
    method = "first"

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate], policy: PipelinePolicy
    ) -> SelectionOutcome:
        if not candidates:
            return SelectionOutcome(None, Selection(method=self.method, reasoning="no candidates"))
        winner = fastest(candidates)
        reason = f"fastest safe candidate: #{winner.index} ({winner.latency_ms:.0f} ms)"
        return SelectionOutcome(winner.index, Selection(method=self.method, reasoning=reason))
