"""What every LLM-backed guard shares: offline skip, one run, or ``votes`` runs.

A guard whose model is the offline echo model cannot judge anything, so it
says so in a ``skipped`` verdict instead of pretending to pass or fail. With
``votes = k`` the same judge runs k times in parallel (at a temperature, so
the runs can differ) and :func:`middleware.guards.voting.vote` decides; each
run goes through the normal guard runner, so a failed run is an error
verdict with the raw output, not an exception. A call that fails after the
model began answering (a stream that broke off or timed out) is read as far
as it got, and counts only if that much already blocks: a fail-open guard
must not let through a judge that had said "unsafe" before the connection
dropped, while a partial "safe" proves nothing (then ``on_error``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol

from middleware.errors import LLMError, VerdictParseError
from middleware.guards.config import GuardConfigBase
from middleware.guards.guard import Guard, GuardContext
from middleware.guards.runner import run_guard
from middleware.guards.voting import Voter, vote
from middleware.llm.model import ChatModel, Completion, Message, ModelSettings
from middleware.types import Outcome, Verdict

OFFLINE_REASON = "skipped: no LLM configured (offline echo model)"


def skipped_verdict(name: str, ctx: GuardContext, reason: str = OFFLINE_REASON) -> Verdict:
    return Verdict(
        guard=name,
        stage=ctx.stage,
        outcome=Outcome.SKIPPED,
        reason=reason,
        candidate_index=ctx.candidate_index,
    )


def offline_notice(guards: Iterable[tuple[str, Guard]]) -> str | None:
    """A line for operators naming the (name, guard) pairs that will only say "skipped"."""
    names = [name for name, guard in guards if guard.offline]
    if not names:
        return None
    return f"LLM guards {', '.join(names)} will be skipped: no LLM configured (offline echo model)"


def with_usage(v: Verdict, completion: Completion) -> Verdict:
    """Attach the model and token use so the decision accounts for the call."""
    return v.model_copy(
        update={
            "model": completion.model,
            "tokens_in": completion.tokens_in,
            "tokens_out": completion.tokens_out,
        }
    )


class _VotingConfig(Protocol):
    votes: int
    on_error: str

    def effective_quorum(self) -> int: ...

    def run_temperature(self) -> float: ...


class _Once:
    """One run of the judge at a fixed temperature, shaped like a guard for the runner."""

    local = False
    offline = False

    def __init__(self, owner: LLMGuard, temperature: float) -> None:
        self.name = owner.name
        self._owner = owner
        self._temperature = temperature

    async def check(self, text: str, context: GuardContext) -> Verdict:
        return await self._owner.judge_once(text, context, self._temperature)


class LLMGuard:
    """Base class: subclasses say what to ask (:meth:`request`) and how to read the
    answer (:meth:`read`, which raises VerdictParseError on junk)."""

    local = False  # a model call: runs as a task, under its timeout

    def __init__(self, cfg: Any, model: ChatModel) -> None:
        self.name: str = cfg.name
        self.model = model
        self.offline = model.offline
        self._voting: _VotingConfig = cfg
        base: GuardConfigBase = cfg
        # Runs report what they judged; the ensemble's own action applies once, on the result.
        self._run_cfg = base.model_copy(update={"action": "block"})

    def request(
        self, text: str, context: GuardContext, temperature: float
    ) -> tuple[list[Message], ModelSettings]:
        raise NotImplementedError

    def read(self, answer: str, text: str, context: GuardContext) -> Verdict:
        raise NotImplementedError

    async def judge_once(self, text: str, context: GuardContext, temperature: float) -> Verdict:
        messages, settings = self.request(text, context, temperature)
        try:
            completion = await self.model.complete(messages, settings=settings)
        except LLMError as exc:
            cut = self._blocked_before_failing(exc, text, context)
            if cut is None:
                raise
            return cut
        return with_usage(self.read(completion.text, text, context), completion)

    def _blocked_before_failing(
        self, exc: LLMError, text: str, context: GuardContext
    ) -> Verdict | None:
        """The verdict of what a failed call had answered, when that much blocks."""
        if not exc.raw:
            return None
        try:
            partial = self.read(exc.raw, text, context)
        except VerdictParseError:
            return None
        if partial.outcome is not Outcome.BLOCK:
            return None
        partial.reason = f"{partial.reason}; then the call failed: {exc}"
        return partial

    async def check(self, text: str, context: GuardContext) -> Verdict:
        if self.offline:
            return skipped_verdict(self.name, context)
        temperature = self._voting.run_temperature()
        if self._voting.votes == 1:
            return await self.judge_once(text, context, temperature)
        fail_closed = self._voting.on_error == "block"
        voters = [
            Voter(
                name=f"{self.name}#{i + 1}",
                run=partial(run_guard, _Once(self, temperature), self._run_cfg, text, context),
                error_is_unsafe=fail_closed,
            )
            for i in range(self._voting.votes)
        ]
        return await vote(self.name, context, voters, self._voting.effective_quorum())
