"""Screening: the one way a set of guards is run on one text.

The pipeline, replay and ``guardbot screen`` all call :func:`screen`, so every
guard call everywhere has the same timeout, ``on_error`` policy and action
(through :func:`middleware.guards.runner.run_guard`), and redactions are
chained the same way. Guards that do I/O run in parallel as tasks; ``local``
(CPU-only, microsecond) guards run inline while those are in flight, since a
task each would cost more than the guard itself.

By default screening stops at the first blocking verdict: every finished
verdict is recorded before the block cancels the guards still running (the
verdict is data; the trip is control flow), and cancelled guards are recorded
as ``skipped`` so the audit shows they never finished. With
``every_guard=True`` (replay and ``guardbot screen``, which report what each
guard thinks) every guard runs to the end and verdicts come in config order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from middleware.guards.guard import GuardContext
from middleware.guards.runner import run_guard
from middleware.pipeline.policy import ConfiguredGuard
from middleware.types import Outcome, Verdict

SKIPPED_REASON = "cancelled: another guard already blocked"


@dataclass(slots=True)
class Screening:
    """What the guards said about one text, and the text as it may be shown."""

    verdicts: list[Verdict]
    blocked: bool
    text: str  # after every ``redact`` verdict was applied (unchanged when none)

    @property
    def blocked_by(self) -> str | None:
        return next((v.guard for v in self.verdicts if v.blocking), None)


async def screen(
    guards: Sequence[ConfiguredGuard],
    text: str,
    ctx: GuardContext,
    *,
    every_guard: bool = False,
    sent: Callable[[], object] | None = None,
) -> Screening:
    """Run ``guards`` on ``text``; then, unless blocked, chain their redactions.

    ``sent`` is called once the remote guards have sent their requests (at once
    when there are none): the pipeline starts what can wait that long then, so
    nothing (a thread woken for a history read, say) competes with a guard's
    request, which is what a blocked message waits on.
    """
    if every_guard:  # nothing waits on this path's requests first: tell at once
        if sent is not None:
            sent()
        verdicts = await _run_every(guards, text, ctx)
        blocked = any(v.blocking for v in verdicts)
    else:
        verdicts, blocked = await _run_until_blocked(guards, text, ctx, sent or _nothing)
    if not blocked:
        text, blocked = await _redact(verdicts, guards, text, ctx)
    return Screening(verdicts, blocked, text)


def _nothing() -> None:
    return None


async def _run_until_blocked(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext, sent: Callable[[], object]
) -> tuple[list[Verdict], bool]:
    verdicts: list[Verdict] = []
    remote = [g for g in guards if not g.guard.local]
    local = [g for g in guards if g.guard.local]
    if not remote:
        sent()
        unrun = await _run_inline(local, text, ctx, verdicts, stop_at_block=True)
        return _with_skipped(verdicts, unrun, ctx), bool(unrun) or _blocked(verdicts)
    blocked = False
    async with asyncio.TaskGroup() as tg:
        pending = {
            tg.create_task(run_guard(g.guard, g.config, text, ctx)): g.config.name for g in remote
        }
        await asyncio.sleep(0)  # let remote guards send their requests first
        sent()
        unrun = await _run_inline(local, text, ctx, verdicts, stop_at_block=True)
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


async def _run_every(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext
) -> list[Verdict]:
    """Every guard's verdict, in config order (no stopping at the first block)."""
    local = [g for g in guards if g.guard.local]
    remote = [g for g in guards if not g.guard.local]
    found: list[Verdict] = []
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(run_guard(g.guard, g.config, text, ctx)) for g in remote]
        if tasks:
            await asyncio.sleep(0)  # let remote guards send their requests first
        await _run_inline(local, text, ctx, found, stop_at_block=False)
    by_name = {v.guard: v for v in found} | {
        g.config.name: t.result() for g, t in zip(remote, tasks, strict=True)
    }
    return [by_name[g.config.name] for g in guards]


async def _run_inline(
    guards: Sequence[ConfiguredGuard],
    text: str,
    ctx: GuardContext,
    verdicts: list[Verdict],
    *,
    stop_at_block: bool,
) -> list[str]:
    """Run guards one by one (until one blocks); returns the names left unrun."""
    for i, g in enumerate(guards):
        result = await run_guard(g.guard, g.config, text, ctx)
        verdicts.append(result)
        if result.blocking and stop_at_block:
            return [rest.config.name for rest in guards[i + 1 :]]
    return []


async def _redact(
    verdicts: list[Verdict], guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext
) -> tuple[str, bool]:
    """Apply ``redact`` verdicts; returns (text, blocked).

    Several redacting guards are chained so that each mask sticks: every one
    after the first re-checks the already-masked text, under the same runner
    (timeout, ``on_error``) as any guard call, and its verdict is recorded.
    """
    redacting = [v for v in verdicts if v.outcome is Outcome.REDACT and v.redacted_text is not None]
    if not redacting:
        return text, False
    text = redacting[0].redacted_text or text
    by_name = {g.config.name: g for g in guards}
    for v in redacting[1:]:
        g = by_name[v.guard]
        again = await run_guard(g.guard, g.config, text, ctx)
        verdicts.append(again)
        if again.blocking:
            return text, True
        if again.redacted_text is not None:
            text = again.redacted_text
    return text, False


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
                reason=SKIPPED_REASON,
                candidate_index=ctx.candidate_index,
            )
        )
    return verdicts
