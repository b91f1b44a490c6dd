"""The read-only decision commands: recent, why, stats and the replay summary.

They answer from the decision log in a few short lines, because the answer
lands in a chat message (Discord caps one at 2,000 characters). User text is
quoted on one line, clipped, with mentions defused. The full detail stays in
the shell commands (`guardbot show ID`, `guardbot logs`).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from bot.admin.context import Context, quote
from bot.admin.parser import Command
from middleware.types import Decision, Outcome, utc_now

DEFAULT_STATS_WINDOW = timedelta(hours=24)


async def recent(ctx: Context, cmd: Command) -> str:
    decisions = await ctx.bot.log.query(
        blocked=True if cmd.blocked else None,
        channel_id=ctx.request.channel_id if cmd.here else None,
        limit=cmd.count,
    )
    what = "blocked decisions" if cmd.blocked else "decisions"
    if not decisions:
        return f"No {what} yet" + (" in this channel." if cmd.here else ".")
    lines = [f"Last {len(decisions)} {what} (newest first; `why ID` explains one):"]
    for d in decisions:
        r = d.request
        by = f" by {d.blocked_by}" if d.blocked_by else ""
        text = quote(r.text, 50) if r.text else "(text not stored)"
        lines.append(
            f"{d.id}  {d.created_utc:%m-%d %H:%M}  {r.platform}:{r.channel_id}  "
            f"{quote(r.user_name or r.user_id, 20)}  {d.action.value}{by}  {text}"
        )
    return "\n".join(lines)


async def why(ctx: Context, cmd: Command) -> str:
    assert cmd.target is not None
    try:
        decision = await ctx.bot.log.get(cmd.target)
    except ValueError as exc:  # an ambiguous id prefix
        return str(exc)
    if decision is None:
        return f"No decision with id {quote(cmd.target, 64)}; `recent` lists the latest ids."
    return explain(decision)


def explain(d: Decision) -> str:
    r = d.request
    head = f"Decision {d.id}: {d.action.value}" + (f" by {d.blocked_by}" if d.blocked_by else "")
    lines = [
        head,
        f"when: {d.created_utc:%Y-%m-%d %H:%M:%S} UTC in {r.platform}:{r.channel_id}, "
        f"from {quote(r.user_name or r.user_id, 30)}",
        "message: " + (quote(r.text, 200) if r.text else "(text not stored)"),
    ]
    for v in d.verdicts:
        if v.blocking:
            score = f", score {v.score:.2f}" if v.score is not None else ""
            category = f", category {v.category}" if v.category else ""
            lines.append(
                f"because: guard {v.guard} ({v.stage.value}) said {v.outcome.value}"
                f"{category}{score}" + (f": {quote(v.reason, 150)}" if v.reason else "")
            )
    if d.error:
        lines.append(f"error: {quote(d.error, 200)}")
    counts = Counter(v.outcome.value for v in d.verdicts)
    if counts:
        fired = [
            f"{v.guard} {v.outcome.value}"
            for v in d.verdicts
            if not v.blocking and v.outcome in (Outcome.FLAG, Outcome.REDACT, Outcome.ERROR)
        ]
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        lines.append(f"verdicts: {summary}" + (f" (also: {', '.join(fired)})" if fired else ""))
    if d.candidates:
        chosen = next((c for c in d.candidates if c.chosen), None)
        errors = Counter(c.error for c in d.candidates if c.error)
        text = f"candidates: {len(d.candidates)}"
        if errors:
            text += " (" + ", ".join(f"{n} {quote(e, 60)}" for e, n in errors.items()) + ")"
        if chosen is not None:
            text += f"; #{chosen.index} chosen ({chosen.model})"
        if d.selection and d.selection.method not in ("single",):
            text += f" by {d.selection.method}"
            if d.selection.reasoning:
                text += f": {quote(d.selection.reasoning, 120)}"
        lines.append(text)
    lines.append("reply: " + (quote(d.reply, 200) if d.reply else "(none)"))
    t = d.timings
    lines.append(
        f"timings: total {t.total_ms:.0f} ms, input guards {t.input_guards_ms:.0f} ms, "
        f"generation {t.generation_ms:.0f} ms, saved by running in parallel {t.saved_ms:.0f} ms"
    )
    lines.append(
        f"tokens {d.tokens_in}+{d.tokens_out}, cost ${d.cost_usd:.4f}, "
        f"config {d.config_fingerprint or '?'}, delivery {d.delivery.status}"
    )
    return "\n".join(lines)


async def stats(ctx: Context, cmd: Command) -> str:
    since = cmd.since or utc_now() - DEFAULT_STATS_WINDOW
    return summarize(await ctx.bot.log.stats(since=since), since=since)


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
    from bot.replay import replay_summary  # replay pulls in the pipeline re-runner; load late

    return await replay_summary(ctx.bot, since=cmd.since or "24h", actor=ctx.actor)
