"""The selection protocol used by the pipeline when ``best_of > 1``.

``first`` is handled inside the pipeline (it needs to cancel the losers as
soon as one candidate passes); every other method is a :class:`Selector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from middleware.types import Candidate, ChatRequest, LLMCall, Selection

if TYPE_CHECKING:
    from middleware.pipeline.policy import PipelinePolicy


@dataclass(slots=True)
class SelectionOutcome:
    chosen_index: int | None  # Candidate.index of the winner; None = no winner
    selection: Selection
    llm_calls: list[LLMCall] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)  # Candidate.index -> score
    reply_override: str | None = None  # e.g. "I'm not sure" when a vote is too split


class Selector(Protocol):
    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate], policy: PipelinePolicy
    ) -> SelectionOutcome: ...
