"""What one pipeline run cost: its timings, model calls, tokens and dollars.

Kept apart from :mod:`.run` (which decides) so that the arithmetic of a decision's
account is read in one place; every path of a run (streamed or not) ends here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from middleware.pipeline.policy import PipelinePolicy
from middleware.types import Candidate, Decision, LLMCall, Outcome, Verdict


@dataclass(slots=True)
class Run:
    """One candidate's progress; filled in place so a cancelled one still shows."""

    candidate: Candidate
    verdicts: list[Verdict] = field(default_factory=list)
    generated_at: float | None = None
    screen_ms: float = 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def account(
    decision: Decision,
    runs: list[Run],
    policy: PipelinePolicy,
    started: float,
    input_done: float,
) -> None:
    """Fill in the decision's timings, candidates, model calls, tokens and cost."""
    t = decision.timings
    t.total_ms = ms(time.perf_counter() - started)
    t.input_guards_ms = ms(input_done - started)
    t.generation_ms = max((r.candidate.latency_ms for r in runs), default=0.0)
    t.output_guards_ms = max((r.screen_ms for r in runs), default=0.0)
    sequential = t.input_guards_ms + t.generation_ms + t.output_guards_ms + t.selection_ms
    t.saved_ms = round(max(0.0, sequential - t.total_ms), 3)
    decision.candidates = [r.candidate for r in runs]
    decision.config_fingerprint = policy.fingerprint
    for r in runs:
        c = r.candidate
        decision.llm_calls.append(
            LLMCall(
                purpose="generation",
                model=c.model,
                tokens_in=c.tokens_in,
                tokens_out=c.tokens_out,
                latency_ms=c.latency_ms,
                error=c.error,
            )
        )
    for v in decision.verdicts:
        if v.model:
            decision.llm_calls.append(
                LLMCall(
                    purpose=f"guard:{v.guard}",
                    model=v.model,
                    tokens_in=v.tokens_in,
                    tokens_out=v.tokens_out,
                    latency_ms=v.latency_ms,
                    error=v.reason if v.outcome is Outcome.ERROR else None,
                )
            )
    decision.tokens_in = sum(c.tokens_in for c in decision.llm_calls)
    decision.tokens_out = sum(c.tokens_out for c in decision.llm_calls)
    decision.cost_usd = sum(
        policy.cost_usd(c.model, c.tokens_in, c.tokens_out) for c in decision.llm_calls
    )
