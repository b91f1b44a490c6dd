"""Best-of-N selection: the protocol, the one "first" rule, and fallback chains.

``Selector.select(request, candidates)`` names one of the safe candidates;
each selector gets its model and timeout when it is built (see
:mod:`middleware.selection.factory`), so it needs nothing from the policy.

"First" means one thing everywhere: :func:`fastest`, the lowest latency with
the lower index breaking exact ties. The pipeline races with it (cancelling
the slower candidates as soon as one passes) and :class:`FirstSelector`, the
last link of every :class:`FallbackChain`, falls back to it: when a judge
cannot be parsed or a vote is too split to trust, the bot still answers, with
the reply that would have won the race.

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
from dataclasses import dataclass, field
from typing import Protocol

from middleware.types import Candidate, ChatRequest, LLMCall, Selection


@dataclass(slots=True)
class SelectionOutcome:
    chosen_index: int | None  # Candidate.index of the winner; None = no winner
    selection: Selection
    llm_calls: list[LLMCall] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)  # Candidate.index -> score
    reply_override: str | None = None  # e.g. "I'm not sure" when a vote is too split


class Selector(Protocol):
    """Chooses among safe candidates; ``method`` names it in the audit."""

    @property
    def method(self) -> str: ...

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate]
    ) -> SelectionOutcome: ...


def fastest(candidates: Sequence[Candidate]) -> Candidate:
    """Lowest latency; the lower index breaks exact ties so the result is stable."""
    return min(candidates, key=lambda c: (c.latency_ms, c.index))


class FirstSelector:
    method = "first"

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate]
    ) -> SelectionOutcome:
        if not candidates:
            return SelectionOutcome(None, Selection(method=self.method, reasoning="no candidates"))
        winner = fastest(candidates)
        reason = f"fastest safe candidate: #{winner.index} ({winner.latency_ms:.0f} ms)"
        return SelectionOutcome(winner.index, Selection(method=self.method, reasoning=reason))


class FallbackChain:
    def __init__(self, selectors: Sequence[Selector]) -> None:
        if not selectors:
            raise ValueError("a fallback chain needs at least one selector")
        self.selectors = tuple(selectors)
        self.method = self.selectors[0].method

    def __repr__(self) -> str:
        return "FallbackChain(" + " -> ".join(s.method for s in self.selectors) + ")"

    async def select(
        self, request: ChatRequest, candidates: Sequence[Candidate]
    ) -> SelectionOutcome:
        valid = {c.index for c in candidates}
        failed: list[Selection] = []
        calls: list[LLMCall] = []
        scores: dict[int, float] = {}
        for selector in self.selectors:
            try:
                outcome = await selector.select(request, candidates)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken selector falls back like a failed one
                reason = f"selector failed: {type(exc).__name__}: {exc}"
                outcome = SelectionOutcome(
                    None, Selection(method=selector.method, reasoning=reason)
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
