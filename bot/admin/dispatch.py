"""The one entry point of admin commands, shared by console, Slack and Discord.

Order matters: authorise first (deny by default; a refusal is recorded),
then parse, then run. Every command leaves an admin_actions row: changes
write theirs in the same transaction as the setting, everything else
(reads, refusals, rejected values) is recorded here. A command never goes
through the LLM and never raises into an adapter: any failure becomes a
clear answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.admin import commands, decisions
from bot.admin.auth import REFUSAL, actor_of, is_admin
from bot.admin.context import Context, audit_text
from bot.admin.parser import Command, ParseError, parse
from bot.config.keys import SettingError
from bot.config.runtime import GLOBAL
from middleware.decision_log import LogUnavailable
from middleware.types import ChatRequest

if TYPE_CHECKING:
    from bot.app import GuardBot

log = logging.getLogger("guardbot.admin")

MAX_ANSWER_CHARS = 1900  # Discord's 2,000-character message cap, with room to spare
LOG_DOWN = (
    "The decision log cannot be written, so nothing was changed "
    "(admin commands are never run off the record): {error}"
)

Handler = Callable[[Context, Command], Awaitable[str]]


HANDLERS: dict[str, Handler] = {
    "help": commands.help_text,
    "status": commands.status,
    "guard list": commands.guard_list,
    "set": commands.set_value,
    "reset": commands.reset_value,
    "recent": decisions.recent,
    "why": decisions.why,
    "stats": decisions.stats,
    "replay": decisions.replay,
}
CHANGES = {"set", "reset"}  # these record themselves (the settings write, or a no-op row)


async def run_admin_command(
    bot: GuardBot, request: ChatRequest, command: str, *, platform_admin: bool = False
) -> str:
    ctx = Context(bot, request, actor_of(request), audit_text(command.replace("\x00", "")))
    try:
        answer = await _run(ctx, command, platform_admin=platform_admin)
    except LogUnavailable as exc:
        log.error("admin command by %s not run: decision log unavailable: %s", ctx.actor, exc)
        answer = LOG_DOWN.format(error=exc)
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[: MAX_ANSWER_CHARS - 60].rstrip() + "\n… (cut; the shell commands show all)"
    return answer


async def _run(ctx: Context, command: str, *, platform_admin: bool) -> str:
    bot = ctx.bot
    if not is_admin(bot.config.admin, ctx.request, platform_admin=platform_admin):
        log.warning("refused admin command from %s in %s", ctx.actor, ctx.here)
        try:
            await ctx.record(allowed=False, error="not an admin")
        except LogUnavailable as exc:
            log.error("could not record the refused admin command: %s", exc)
        return REFUSAL.format(actor=ctx.actor)
    await bot.settings.ensure_loaded()
    try:
        cmd = parse(command)
    except ParseError as exc:
        await ctx.record(error=f"parse: {exc}")
        return f"Sorry, I could not read that: {exc}"
    key = cmd.key
    scope = (ctx.here if cmd.here else GLOBAL) if key else None  # for the audit row only
    try:
        answer = await HANDLERS[cmd.name](ctx, cmd)
    except SettingError as exc:
        await ctx.record(key=key, scope=scope, error=str(exc))
        return f"Not changed: {exc}"
    except LogUnavailable:
        raise
    except Exception as exc:
        # A bug in one command must not take the bot down, nor leak internals to chat.
        log.exception("admin command %r by %s failed", ctx.text, ctx.actor)
        await ctx.record(key=key, scope=scope, error=f"internal error: {type(exc).__name__}")
        return "Sorry, that admin command failed unexpectedly; the bot's log has the details."
    if cmd.name not in CHANGES:
        await ctx.record()
    return answer
