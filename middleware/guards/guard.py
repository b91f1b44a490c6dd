"""The guard protocol: ``check(text, context) -> Verdict``.

A guard only judges. It reports ``Outcome.BLOCK`` for "unsafe by my
threshold" and ``Outcome.ALLOW`` otherwise, with category, score, reason and
raw model output. What that *does* (block, flag, redact), timeouts and error
policy are applied uniformly by :mod:`middleware.guards.runner`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from middleware.types import ChatRequest, Outcome, Stage, Verdict


@dataclass(frozen=True, slots=True)
class GuardContext:
    stage: Stage
    request: ChatRequest
    candidate_index: int | None = None


class Guard(Protocol):
    """``check`` returns a fresh Verdict per call (the runner fills in policy fields).

    A guard may also set ``local = True`` when it is cheap, CPU-only work with no
    I/O: the pipeline then runs it inline instead of paying for a task.
    """

    name: str

    async def check(self, text: str, context: GuardContext) -> Verdict: ...


class GuardParseError(Exception):
    """A model's verdict did not follow the required format; counts as a guard error."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


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
    return Verdict(
        guard=guard,
        stage=context.stage,
        outcome=Outcome.BLOCK if unsafe else Outcome.ALLOW,
        category=category,
        score=score,
        reason=reason,
        raw=raw,
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
