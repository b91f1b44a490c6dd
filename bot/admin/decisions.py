"""The read-only decision commands: recent, why, stats and replay.

They answer from the decision log in a few short lines, because the answer
lands in a chat message (Discord caps one at 2,000 characters). User text is
quoted on one line, clipped, with mentions defused. The full detail stays in
the shell commands (`guardbot show ID`, `guardbot logs`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapters.render import explain, plain, quote, summary_line
from bot.admin.context import Command, Context
from bot.audit.streamed import with_stream
from bot.replay.render import describe_flip
from bot.replay.rerun import ReplayHost
from bot.replay.results import Kind
from bot.replay.select import DecisionFilter
from bot.replay.session import ReplayError, ReplayOptions, run_replay
from bot.replay.when import parse_when
from middleware.types import utc_now

DEFAULT_STATS_WINDOW = timedelta(hours=24)
CHAT_LIMIT = 1000  # a chat command must answer in seconds, not minutes
SHOWN_CHANGES = 5


async def recent(ctx: Context, cmd: Command) -> str:
    decisions = await ctx.host.log.query(
        blocked=True if cmd.blocked else None,
        channel_id=ctx.request.channel_id if cmd.here else None,
        limit=cmd.count,
    )
    what = "blocked decisions" if cmd.blocked else "decisions"
    if not decisions:
        return f"No {what} yet" + (" in this channel." if cmd.here else ".")
    # Ids as their shortest unique prefix (as `guardbot logs` shows them); `why` takes them.
    short = await ctx.host.log.short_ids([d.id for d in decisions])
    lines = [f"Last {len(decisions)} {what} (newest first; `why ID` explains one):"]
    lines += [summary_line(d, short) for d in decisions]
    return "\n".join(lines)


async def why(ctx: Context, cmd: Command) -> str:
    assert cmd.decision is not None
    try:
        decision = await ctx.host.log.get(cmd.decision)
    except ValueError as exc:  # an ambiguous id prefix
        return str(exc)
    if decision is None:
        return f"No decision with id {quote(cmd.decision, 64)}; `recent` lists the latest ids."
    return explain(await with_stream(ctx.host.log, decision))


async def stats(ctx: Context, cmd: Command) -> str:
    since = cmd.since or utc_now() - DEFAULT_STATS_WINDOW
    return summarize(await ctx.host.log.stats(since=since), since=since)


def summarize(data: dict[str, Any], *, since: datetime) -> str:
    """The log's stats (as `guardbot stats --json` gives them) in four lines."""
    period = f"since {since:%Y-%m-%d %H:%M} UTC"
    total = data.get("decisions", 0)
    if not total:
        return f"No messages {period}."
    actions = data.get("actions", {})
    rate = data.get("block_rate_ratio") or 0.0
    latency = data.get("latency", {}).get("total_ms", {})
    lines = [
        f"{total} messages {period}: {actions.get('replied', 0)} replied, "
        f"{actions.get('blocked', 0)} blocked ({rate:.1%}), {actions.get('error', 0)} errors",
        f"latency: median {_ms(latency.get('p50_ms'))}, p95 {_ms(latency.get('p95_ms'))}; "
        f"saved by running in parallel {_ms(data.get('saved_per_decision_ms'))} per message",
        f"tokens {data.get('tokens_in', 0)} in + {data.get('tokens_out', 0)} out, "
        f"cost ${data.get('cost_usd', 0.0):.4f}",
    ]
    by_guard = data.get("blocked_by_guard", {})
    if by_guard:
        top = ", ".join(f"{g} {v['blocked']}" for g, v in list(by_guard.items())[:8])
        lines.append(f"blocks by guard: {top}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


async def replay(ctx: Context, cmd: Command) -> str:
    return await replay_summary(ctx.host, since=cmd.since or "24h", actor=ctx.actor)


async def replay_summary(
    host: ReplayHost,
    since: str | datetime | None = "24h",
    *,
    actor: str = "chat",
    limit: int = CHAT_LIMIT,
    concurrency: int = 8,
) -> str:
    """Replay recent decisions guards-only under the bot's current policy; a short report.

    ``since`` is a datetime or what ``--since`` accepts (``7d``, ``2024-05-01``);
    a bad value raises :class:`bot.replay.when.WhenError` (a ValueError) whose
    message can be shown to the admin as is.
    """
    start = parse_when(since) if isinstance(since, str) else since
    options = ReplayOptions(
        selection=DecisionFilter(since=start, limit=limit),
        concurrency=concurrency,
        actor=actor,
        config_source="current configuration",
    )
    try:
        report = await run_replay(host, options)
    except ReplayError as exc:
        return f"Replay failed: {exc}"
    s = report.tally.summary()
    window = f"since {start:%Y-%m-%d %H:%M} UTC" if start else "all logged decisions"
    lines = [
        f"Replay of {s['selected']} decision(s) {window} under the current policy "
        f"(config {report.config_fingerprint}, run {report.run_id}):",
        f"unchanged {s['unchanged']} · newly blocked {s['newly_blocked']} · "
        f"newly allowed {s['newly_allowed']} · verdicts changed {s['verdicts_changed']} · "
        f"error ↔ replied {s['outcome_changed']} · "
        f"errors {s['errors']} · not replayable {s['not_replayable']}",
    ]
    changed = [r for r in report.tally.sorted_notable() if r.kind is not Kind.NOT_REPLAYABLE]
    short = await host.log.short_ids([r.decision_id for r in changed[:SHOWN_CHANGES]])
    for r in changed[:SHOWN_CHANGES]:
        why = "; ".join(describe_flip(f) for f in r.flips) or (r.error or r.note or "")
        lines.append(
            f"- {plain(short.get(r.decision_id, r.decision_id), 40)} "
            f"{r.kind.value.replace('_', ' ')}: "
            f"{r.old_action} → {r.new_action or '–'} ({plain(why, 160)})"
        )
    if len(changed) > SHOWN_CHANGES:
        lines.append(
            f"… and {len(changed) - SHOWN_CHANGES} more: `guardbot replay --since ...` "
            "shows them all"
        )
    if report.limited:
        lines.append(f"(only the newest {limit} decisions were replayed)")
    return "\n".join(lines)
