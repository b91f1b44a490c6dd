"""The guard protocol: ``check(text, context) -> Verdict``.

A guard only judges. It reports ``Outcome.BLOCK`` for "unsafe by my
threshold" and ``Outcome.ALLOW`` otherwise, with category, score, reason and
raw model output (clipped: a server can answer megabytes). What that *does*
(block, flag, redact), timeouts and error policy are applied uniformly by
:mod:`middleware.guards.runner`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from middleware.llm.model import clip
from middleware.types import ChatRequest, Outcome, Stage, Verdict


@dataclass(frozen=True, slots=True)
class GuardContext:
    stage: Stage
    request: ChatRequest
    candidate_index: int | None = None


class Guard(Protocol):
    """``check`` returns a fresh Verdict per call (the runner fills in policy fields).

    ``local``: cheap, CPU-only work with no I/O; screening runs it inline instead
    of paying for a task, and without a timer on short texts (it cannot suspend).
    ``offline``: it can only answer ``skipped`` (an LLM guard with no model
    configured); operators are told, and an ensemble of such members is offline too.
    A bad model answer is raised as :class:`~middleware.errors.VerdictParseError`.
    """

    name: str

    @property
    def local(self) -> bool: ...

    @property
    def offline(self) -> bool: ...

    async def check(self, text: str, context: GuardContext) -> Verdict: ...


def verdict(
    guard: str,
    context: GuardContext,
    *,
    unsafe: bool,
    category: str = "",
    score: float | None = None,
    reason: str = "",
    raw: str | None = None,
    redacted_text: str | None = None,
) -> Verdict:
    """Shorthand for guards: build the verdict for ``context`` from a judgement."""
    outcome = Outcome.BLOCK if unsafe else Outcome.ALLOW
    if not category and raw is None and redacted_text is None:
        # The usual verdict (nothing found) is built from the fields it sets: validation
        # costs per argument given, ~1 us of a message's eight verdicts' ~20 us.
        if context.candidate_index is None:
            return Verdict(
                guard=guard, stage=context.stage, outcome=outcome, score=score, reason=reason
            )
        return Verdict(
            guard=guard,
            stage=context.stage,
            outcome=outcome,
            score=score,
            reason=reason,
            candidate_index=context.candidate_index,
        )
    return Verdict(
        guard=guard,
        stage=context.stage,
        outcome=outcome,
        category=category,
        score=score,
        reason=reason,
        raw=None if raw is None else clip(raw),
        candidate_index=context.candidate_index,
        redacted_text=redacted_text,
    )


def findings_verdict(
    guard: str,
    context: GuardContext,
    spans: list[tuple[int, int, str]],
    *,
    category: str,
    nothing: str,
    redacted_text: str,
) -> Verdict:
    """The verdict of a pattern scanner: unsafe when it found spans (start, end, kind).

    The reason counts findings by kind and never repeats the found text itself.
    """
    if not spans:
        return verdict(guard, context, unsafe=False, score=0.0, reason=nothing)
    counts = Counter(kind for _, _, kind in spans)
    kinds = sorted(counts)
    return verdict(
        guard,
        context,
        unsafe=True,
        category=f"{category}:" + ",".join(kinds),
        score=1.0,
        reason="found " + ", ".join(f"{counts[k]} {k}" for k in kinds),
        redacted_text=redacted_text,
    )
