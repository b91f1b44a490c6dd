"""One replay run from start to record: select, re-run, tally, and write the run to the log.

The CLI and the admin chat command both go through :func:`run_replay`. A run
can be stopped early through ``stop`` (Ctrl-C in the CLI): the decisions in
flight are cancelled, the ones already finished are kept, and the run is
still recorded, marked interrupted, so the audit trail shows partial runs too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.replay.rerun import Mode, Replayer, ReplayHost, replay_all
from bot.replay.results import ReplayResult, RunReport, Tally
from bot.replay.select import DecisionFilter, Logged, select
from middleware.decision_log.storage import LogUnavailable
from middleware.types import ChatRequest, utc_now

log = logging.getLogger("guardbot.replay")
MAX_STORED_CHANGES = 1000  # the run record keeps this many changed decisions in full


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    selection: DecisionFilter = DecisionFilter()
    mode: Mode = "guards-only"
    concurrency: int = 8
    actor: str = "cli"
    config_source: str = "current configuration"


class ReplayError(Exception):
    """The run cannot start (e.g. the policy's guards cannot be built); the message says why."""


async def prepare(host: ReplayHost) -> str:
    """Load runtime settings and build the policy's guards once, before any decision.

    Returns the fingerprint of the policy outside any channel's own settings. A
    policy whose guards cannot be built fails here, once and clearly, rather
    than as the same error on every decision.
    """
    await host.settings.ensure_loaded()
    try:
        _, policy = host.policy_for(ChatRequest(platform="replay", text=""))
    except Exception as exc:
        raise ReplayError(f"cannot build the policy: {type(exc).__name__}: {exc}") from exc
    return policy.fingerprint


async def replay_selected(
    host: ReplayHost,
    items: list[Logged],
    options: ReplayOptions,
    *,
    limited: bool = False,
    on_result: Callable[[ReplayResult, Tally], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RunReport:
    """Replay ``items`` and record the run; ``stop`` ends it early (marked interrupted)."""
    fingerprint = await prepare(host)  # cached: free when the caller already prepared
    created = utc_now()
    started = time.perf_counter()
    tally = Tally(selected=len(items))

    def collect(result: ReplayResult) -> None:
        tally.add(result)
        if on_result is not None:
            on_result(result, tally)

    replayer = Replayer(host, options.mode)
    work = asyncio.ensure_future(
        replay_all(replayer, items, concurrency=options.concurrency, on_result=collect)
    )
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait(
            {work} | ({stopper} if stopper else set()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if stopper is not None:
            stopper.cancel()
        if not work.done():
            work.cancel()  # our own task; asyncio.wait lets its cancellation end here
            await asyncio.wait({work})
    interrupted = work.cancelled()
    if not interrupted:
        work.result()  # re-raise a real failure
    report = RunReport(
        run_id="",
        created_utc=created,
        actor=options.actor,
        mode=options.mode,
        config_fingerprint=fingerprint,
        config_source=options.config_source,
        filters=options.selection.to_json(),
        tally=tally,
        duration_ms=(time.perf_counter() - started) * 1000,
        interrupted=interrupted,
        limited=limited,
    )
    report.run_id = await record_run(host, report)
    return report


async def record_run(host: ReplayHost, report: RunReport) -> str:
    """Write the run to the log; returns its id, or "" when the log cannot be written."""
    data = report.to_json()
    changes = data.pop("changes")
    for key in ("run_id", "not_replayable_ids"):
        data.pop(key)
    summary = {**data, "stored_changes": min(len(changes), MAX_STORED_CHANGES)}
    try:
        return await host.log.record_replay_run(
            actor=report.actor,
            config_fingerprint=report.config_fingerprint,
            decisions_count=report.tally.done,
            changed_count=report.tally.changed,
            duration_ms=report.duration_ms,
            filters=report.filters,
            summary=summary,
            changes=changes[:MAX_STORED_CHANGES],
        )
    except LogUnavailable as exc:  # a read-only log: the replay is still worth showing
        log.warning("replay run not recorded: %s", exc)
        return ""


async def run_replay(
    host: ReplayHost,
    options: ReplayOptions,
    *,
    on_selected: Callable[[int], None] | None = None,
    on_result: Callable[[ReplayResult, Tally], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RunReport:
    items, limited = await select(host.log, options.selection)
    if on_selected is not None:
        on_selected(len(items))
    return await replay_selected(
        host, items, options, limited=limited, on_result=on_result, stop=stop
    )
