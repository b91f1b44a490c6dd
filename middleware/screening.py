"""Runs a set of guards on one text in parallel and stops at the first block.

Every finished verdict is recorded before a blocking one cancels the guards
still running (the verdict is data; the trip is control flow). Guards that
were cancelled are recorded as ``skipped`` so the audit shows they never
finished, rather than silently missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from middleware.guards.base import GuardContext
from middleware.guards.runner import run_guard
from middleware.policy import ConfiguredGuard
from middleware.types import Outcome, Verdict


async def screen(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext
) -> tuple[list[Verdict], bool]:
    """Return (verdicts, blocked). Stops early on the first blocking verdict."""
    if not guards:
        return [], False
    if len(guards) == 1:  # the common case needs no task at all
        only = await run_guard(guards[0].guard, guards[0].config, text, ctx)
        return [only], only.blocking
    verdicts: list[Verdict] = []
    blocked = False
    async with asyncio.TaskGroup() as tg:
        pending = {
            tg.create_task(run_guard(g.guard, g.config, text, ctx)): g.config.name for g in guards
        }
        while pending and not blocked:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del pending[task]
                result = task.result()
                verdicts.append(result)
                blocked = blocked or result.blocking
        for task in pending:
            task.cancel()
    for name in pending.values():
        verdicts.append(
            Verdict(
                guard=name,
                stage=ctx.stage,
                outcome=Outcome.SKIPPED,
                reason="cancelled: another guard already blocked",
                candidate_index=ctx.candidate_index,
            )
        )
    return verdicts, blocked
