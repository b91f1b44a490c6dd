"""Runs a set of guards on one text in parallel and stops at the first block.

Every finished verdict is recorded before a blocking one cancels the guards
still running (the verdict is data; the trip is control flow). Guards that
were cancelled are recorded as ``skipped`` so the audit shows they never
finished, rather than silently missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from middleware.guards.guard import GuardContext
from middleware.guards.runner import run_guard
from middleware.pipeline.policy import ConfiguredGuard
from middleware.types import Outcome, Verdict


async def screen(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext
) -> tuple[list[Verdict], bool]:
    """Return (verdicts, blocked). Stops early on the first blocking verdict.

    Guards that do I/O run as tasks; ``local`` (CPU-only, microsecond) guards run
    inline while those are in flight, since a task each would cost more than
    the guard itself.
    """
    verdicts: list[Verdict] = []
    remote = [g for g in guards if not getattr(g.guard, "local", False)]
    local = [g for g in guards if getattr(g.guard, "local", False)]
    if not remote:
        unrun = await _run_inline(local, text, ctx, verdicts)
        return _with_skipped(verdicts, unrun, ctx), bool(unrun) or _blocked(verdicts)
    blocked = False
    async with asyncio.TaskGroup() as tg:
        pending = {
            tg.create_task(run_guard(g.guard, g.config, text, ctx)): g.config.name for g in remote
        }
        await asyncio.sleep(0)  # let remote guards send their requests first
        unrun = await _run_inline(local, text, ctx, verdicts)
        blocked = _blocked(verdicts)
        while pending and not blocked:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del pending[task]
                result = task.result()
                verdicts.append(result)
                blocked = blocked or result.blocking
        for task in pending:
            task.cancel()
    return _with_skipped(verdicts, [*unrun, *pending.values()], ctx), blocked


async def _run_inline(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext, verdicts: list[Verdict]
) -> list[str]:
    """Run guards one by one until one blocks; returns the names left unrun."""
    for i, g in enumerate(guards):
        result = await run_guard(g.guard, g.config, text, ctx)
        verdicts.append(result)
        if result.blocking:
            return [rest.config.name for rest in guards[i + 1 :]]
    return []


def _blocked(verdicts: list[Verdict]) -> bool:
    return any(v.blocking for v in verdicts)


def _with_skipped(
    verdicts: list[Verdict], names: Sequence[str], ctx: GuardContext
) -> list[Verdict]:
    for name in names:
        verdicts.append(
            Verdict(
                guard=name,
                stage=ctx.stage,
                outcome=Outcome.SKIPPED,
                reason="cancelled: another guard already blocked",
                candidate_index=ctx.candidate_index,
            )
        )
    return verdicts
