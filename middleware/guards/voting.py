"""Quorum voting for guard ensembles: k voters in parallel, block on m unsafe.

Used both by ``votes = k`` (k runs of the same LLM judge) and by the
``ensemble`` kind (:class:`EnsembleGuard`: other configured guards as members,
usually configured with ``enabled = false`` so they do not also run on their
own; each runs under its own ``timeout_s`` and ``on_error``, and the
ensemble's own ``action`` applies once, to the result). Every voter runs as a
task; the vote stops as soon as the outcome is decided (m unsafe votes, or
too few voters left to reach m) and cancels the rest, which closes their HTTP
requests. Each member's verdict is kept; cancelled ones are recorded as
``skipped``. A member error counts as an unsafe vote when that member is
fail-closed (``on_error = "block"``), else as a safe one; an outcome decided by
errors alone is reported as an error, so the audit never shows a failure as a
judgement. For the same reason the confidence counts only members that judged
(a failure is never "agreeing"), and the reason says how many failed. Members
that are skipped (no model configured) abstain.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from middleware.guards.config import EnsembleGuardConfig, GuardConfigBase
from middleware.guards.guard import Guard, GuardContext
from middleware.guards.runner import run_guard
from middleware.types import Outcome, Verdict

CANCELLED = "cancelled: the vote was already decided"


@dataclass(frozen=True, slots=True)
class Voter:
    name: str
    run: Callable[[], Coroutine[Any, Any, Verdict]]  # never raises except CancelledError
    error_is_unsafe: bool  # this voter is fail-closed


def _vote(v: Verdict, voter: Voter) -> bool | None:
    """True = unsafe, False = safe, None = abstains."""
    if v.outcome in (Outcome.BLOCK, Outcome.FLAG, Outcome.REDACT):
        return True
    if v.outcome is Outcome.ERROR:
        return voter.error_is_unsafe
    if v.outcome is Outcome.ALLOW:
        return False
    return None


async def vote(name: str, ctx: GuardContext, voters: Sequence[Voter], quorum: int) -> Verdict:
    """Run ``voters`` in parallel; BLOCK when ``quorum`` of them say unsafe."""
    results: dict[int, Verdict] = {}
    unsafe = safe = 0
    decided: bool | None = None
    async with asyncio.TaskGroup() as tg:
        tasks = {tg.create_task(voter.run()): i for i, voter in enumerate(voters)}
        pending = set(tasks)
        while pending and decided is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = tasks[task]
                results[i] = task.result()
                choice = _vote(results[i], voters[i])
                if choice is True:
                    unsafe += 1
                elif choice is False:
                    safe += 1
            if unsafe >= quorum:
                decided = True
            elif unsafe + len(pending) < quorum:  # abstentions count as never unsafe
                decided = False
        for task in pending:
            task.cancel()  # outcome known: stop paying for the rest
    members = [_member(results.get(i), voter, ctx) for i, voter in enumerate(voters)]
    return _summary(name, ctx, voters, members, quorum, bool(decided), unsafe, safe)


def _member(v: Verdict | None, voter: Voter, ctx: GuardContext) -> Verdict:
    if v is None:
        return Verdict(
            guard=voter.name,
            stage=ctx.stage,
            outcome=Outcome.SKIPPED,
            reason=CANCELLED,
            candidate_index=ctx.candidate_index,
        )
    # A member's verdict is a vote, not a decision: it never stops the message itself.
    return v.model_copy(update={"guard": voter.name, "blocking": False})


def _summary(
    name: str,
    ctx: GuardContext,
    voters: Sequence[Voter],
    members: list[Verdict],
    quorum: int,
    decided: bool,
    unsafe: int,
    safe: int,
) -> Verdict:
    counted = unsafe + safe
    errors = [v.error_is_unsafe for m, v in zip(members, voters, strict=True)
              if m.outcome is Outcome.ERROR]  # fmt: skip
    errors_unsafe = sum(errors)
    errors_safe = len(errors) - errors_unsafe
    cancelled = sum(1 for m in members if m.reason == CANCELLED)
    tail = f"; {cancelled} cancelled once decided" if cancelled else ""
    if errors_unsafe and errors_safe:
        tail += f"; {len(errors)} failed ({errors_unsafe} counted as unsafe, {errors_safe} as safe)"
    elif errors:
        tail += f"; {len(errors)} failed, counted as {'unsafe' if errors_unsafe else 'safe'}"
    base = dict(
        guard=name,
        stage=ctx.stage,
        candidate_index=ctx.candidate_index,
        members=members,
        model=next((m.model for m in members if m.model), None),
        tokens_in=sum(m.tokens_in for m in members),
        tokens_out=sum(m.tokens_out for m in members),
    )
    if counted == 0:
        return Verdict(outcome=Outcome.SKIPPED, reason="skipped: no member could vote", **base)  # type: ignore[arg-type]
    real_unsafe, real_safe = unsafe - errors_unsafe, safe - errors_safe
    tally = f"{unsafe}/{counted} unsafe, quorum {quorum} of {len(voters)}{tail}"
    # A block won only through failed members, or an allow with no member judging at
    # all, is not a judgement: report the failure and let on_error decide.
    if (decided and real_unsafe <= 0) or (not decided and real_unsafe + real_safe <= 0):
        return Verdict(
            outcome=Outcome.ERROR,
            reason=f"vote decided only by failed members ({tally})",
            score=round(unsafe / counted, 4),
            **base,  # type: ignore[arg-type]
        )
    # Failed members count towards the outcome (per on_error) but never as agreeing
    # with it: confidence is the share of voters whose judgement backs the outcome.
    agreeing = real_unsafe if decided else real_safe
    categories = Counter(m.category for m in members if m.outcome is Outcome.BLOCK and m.category)
    return Verdict(
        outcome=Outcome.BLOCK if decided else Outcome.ALLOW,
        category=categories.most_common(1)[0][0] if decided and categories else "",
        score=round(unsafe / counted, 4),
        confidence=round(agreeing / counted, 4),
        reason=tally,
        **base,  # type: ignore[arg-type]
    )


class EnsembleGuard:
    """``ensemble``: other configured guards as voters, blocking on a quorum."""

    local = False  # its members may call models: it runs as a task, under its timeout

    def __init__(
        self, cfg: EnsembleGuardConfig, members: list[tuple[GuardConfigBase, Guard]]
    ) -> None:
        self.name = cfg.name
        self.quorum = cfg.effective_quorum()
        # Members report what they judged; flag/redact is the ensemble's call.
        self.members = [(c.model_copy(update={"action": "block"}), g) for c, g in members]
        # Offline when no member can vote (every one an LLM guard without a model).
        self.offline = all(g.offline for _, g in members)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        voters = [
            Voter(
                name=cfg.name,
                run=partial(run_guard, guard, cfg, text, context),
                error_is_unsafe=cfg.on_error == "block",
            )
            for cfg, guard in self.members
        ]
        return await vote(self.name, context, voters, self.quorum)
