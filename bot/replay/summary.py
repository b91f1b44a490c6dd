"""The admin chat command's answer: ``replay [--since 7d]`` as a few lines of text.

Admins in Slack or Discord get the same replay as the CLI (guards only, the
bot's current configuration and runtime settings), recorded in the log like
any other run, summarised in plain text short enough for one chat message.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bot.replay.render import describe_flip, safe_text
from bot.replay.results import Kind
from bot.replay.select import Selection
from bot.replay.session import ReplayError, ReplayOptions, run_replay
from bot.replay.when import parse_when

if TYPE_CHECKING:
    from bot.app import GuardBot

CHAT_LIMIT = 1000  # a chat command must answer in seconds, not minutes
SHOWN_CHANGES = 5


async def replay_summary(
    bot: GuardBot,
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
        selection=Selection(since=start, limit=limit),
        concurrency=concurrency,
        actor=actor,
        config_source="current configuration",
    )
    try:
        report = await run_replay(bot, options)
    except ReplayError as exc:
        return f"Replay failed: {exc}"
    s = report.tally.summary()
    window = f"since {start:%Y-%m-%d %H:%M} UTC" if start else "all logged decisions"
    lines = [
        f"Replay of {s['selected']} decision(s) {window} under the current policy "
        f"(config {report.config_fingerprint}, run {report.run_id}):",
        f"unchanged {s['unchanged']} · newly blocked {s['newly_blocked']} · "
        f"newly allowed {s['newly_allowed']} · verdicts changed {s['verdicts_changed']} · "
        f"errors {s['errors']} · not replayable {s['not_replayable']}",
    ]
    changed = [r for r in report.tally.sorted_notable() if r.kind is not Kind.NOT_REPLAYABLE]
    for r in changed[:SHOWN_CHANGES]:
        why = "; ".join(describe_flip(f) for f in r.flips) or (r.error or r.note or "")
        lines.append(
            f"- {r.decision_id} {r.kind.value.replace('_', ' ')}: "
            f"{r.old_action} → {r.new_action or '–'} ({safe_text(why, 160)})"
        )
    if len(changed) > SHOWN_CHANGES:
        lines.append(
            f"… and {len(changed) - SHOWN_CHANGES} more: `guardbot replay --since ...` "
            "shows them all"
        )
    if report.limited:
        lines.append(f"(only the newest {limit} decisions were replayed)")
    return "\n".join(lines)
