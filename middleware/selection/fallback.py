"""Fallback chaining: try selectors in order until one names a safe candidate.

A selector signals "I could not choose" by returning ``chosen_index=None``
(with its reason); a selector that raises is treated the same way, so a bug
or a hostile model reply in one method degrades to the next method and is
recorded in ``Selection.fallback_from`` and the reasoning, never a crash. The
audit details of a failed attempt (the judge's label mapping, partial scores)
are kept on the final selection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from middleware.selection.selector import SelectionOutcome, Selector
from middleware.types import Candidate, ChatRequest, LLMCall, Selection

if TYPE_CHECKING:
    from middleware.pipeline.policy import PipelinePolicy


def method_of(selector: Selector) -> str:
    return str(getattr(selector, "method", type(selector).__name__))


class FallbackChain:
    def __init__(self, selectors: Sequence[Selector]) -> None:
        if not selectors:
            raise ValueError("a fallback chain needs at least one selector")
        self.selectors = tuple(selectors)
        self.method = method_of(self.selectors[0])

    def __repr__(self) -> str:
        return "FallbackChain(" + " -> ".join(method_of(s) for s in self.selectors) + ")"

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate], policy: PipelinePolicy
    ) -> SelectionOutcome:
        valid = {c.index for c in candidates}
        failed: list[Selection] = []
        calls: list[LLMCall] = []
        scores: dict[int, float] = {}
        for selector in self.selectors:
            try:
                outcome = await selector.select(request, candidates, policy)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken selector falls back like a failed one
                reason = f"selector failed: {type(exc).__name__}: {exc}"
                outcome = SelectionOutcome(
                    None, Selection(method=method_of(selector), reasoning=reason)
                )
            calls.extend(outcome.llm_calls)
            scores = scores or outcome.scores
            if outcome.chosen_index in valid:
                outcome.selection = _merge(failed, outcome.selection)
                outcome.llm_calls = calls
                outcome.scores = outcome.scores or scores
                return outcome
            if outcome.chosen_index is not None:  # names a candidate that is not on offer
                outcome.selection.reasoning += (
                    f" (named candidate #{outcome.chosen_index}, not safe)"
                )
            failed.append(outcome.selection)
        last = _merge(failed[:-1], failed[-1])
        return SelectionOutcome(None, last, llm_calls=calls, scores=scores)


def _merge(failed: list[Selection], final: Selection) -> Selection:
    """The final selection, annotated with every method that failed before it."""
    if not failed:
        return final
    notes = [f"{s.method} failed: {s.reasoning}" for s in failed]
    update: dict[str, object] = {
        "fallback_from": [s.method for s in failed] + final.fallback_from,
        "reasoning": "; ".join([*notes, f"fell back to {final.method}: {final.reasoning}"]),
    }
    for name in ("labels", "scores", "votes", "confidence"):
        if not getattr(final, name):
            earlier = next((getattr(s, name) for s in failed if getattr(s, name)), None)
            if earlier:
                update[name] = earlier
    return final.model_copy(update=update)
