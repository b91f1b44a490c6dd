"""The one entry point of admin commands, shared by console, Slack and Discord.

Order matters: authorise first (deny by default; a refusal is recorded),
then parse, then run. Every command leaves an admin_actions row: changes
write theirs in the same transaction as the setting, everything else
(reads, refusals, rejected values) is recorded here. A command never goes
through the LLM and never raises into an adapter: any failure becomes a
clear answer.

Who is an admin is one check, used by every platform: a user listed in
``[admin] users`` as ``platform:user_id`` (or ``platform:*`` for everyone on
that platform, meant for the local console), or, on Discord only, a member
with Manage Server when ``discord_manage_guild`` is on (the adapter reports
that as ``platform_admin``). The list is read from `config.toml` only: no
runtime setting can widen it, so an admin cannot grant admin rights from chat.
"""

from __future__ import annotations

import logging

from bot.admin.context import AdminHost, Context, Registry, audit_text
from bot.admin.parser import ParseError, parse
from bot.admin.registry import REGISTRY
from bot.config.keys import SettingError
from bot.config.runtime import GLOBAL
from bot.config.schema import AdminConfig
from middleware.decision_log.storage import LogUnavailable
from middleware.types import ChatRequest

log = logging.getLogger("guardbot.admin")

MAX_ANSWER_CHARS = 1900  # Discord's 2,000-character message cap, with room to spare
LOG_DOWN = (
    "The decision log cannot be written, so nothing was changed "
    "(admin commands are never run off the record): {error}"
)
REFUSAL = (
    "Sorry, admin commands are only for this bot's admins, and you ({actor}) are not one. "
    "The attempt was logged. An operator can add you to [admin] users in config.toml."
)


def actor_of(request: ChatRequest) -> str:
    """How the audit trail names a user: ``slack:U123``."""
    return f"{request.platform}:{request.user_id or '?'}"


def is_admin(admin: AdminConfig, request: ChatRequest, *, platform_admin: bool = False) -> bool:
    if not request.platform or not request.user_id:
        return False
    allowed = set(admin.users)
    if f"{request.platform}:{request.user_id}" in allowed or f"{request.platform}:*" in allowed:
        return True
    return request.platform == "discord" and platform_admin and admin.discord_manage_guild


async def run_admin_command(
    host: AdminHost,
    request: ChatRequest,
    command: str,
    *,
    platform_admin: bool = False,
    registry: Registry = REGISTRY,
) -> str:
    text = audit_text(command.replace("\x00", ""))
    ctx = Context(host, registry, request, actor_of(request), text)
    try:
        answer = await _run(ctx, command, platform_admin=platform_admin)
    except LogUnavailable as exc:
        log.error("admin command by %s not run: decision log unavailable: %s", ctx.actor, exc)
        answer = LOG_DOWN.format(error=exc)
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[: MAX_ANSWER_CHARS - 60].rstrip() + "\n… (cut; the shell commands show all)"
    return answer


async def _run(ctx: Context, command: str, *, platform_admin: bool) -> str:
    host = ctx.host
    if not is_admin(host.config.admin, ctx.request, platform_admin=platform_admin):
        log.warning("refused admin command from %s in %s", ctx.actor, ctx.here)
        try:
            await ctx.record(allowed=False, error="not an admin")
        except LogUnavailable as exc:
            log.error("could not record the refused admin command: %s", exc)
        return REFUSAL.format(actor=ctx.actor)
    await host.settings.ensure_loaded()
    try:
        spec, cmd = parse(ctx.registry, command)
    except ParseError as exc:
        await ctx.record(error=f"parse: {exc}")
        return f"Sorry, I could not read that: {exc}"
    key = cmd.key
    scope = (ctx.here if cmd.here else GLOBAL) if key else None  # for the audit row only
    try:
        answer = await spec.handler(ctx, cmd)
    except SettingError as exc:  # e.g. --here without a channel, in a read
        await ctx.record(key=key, scope=scope, error=str(exc))
        return f"Not changed: {exc}"
    except LogUnavailable:
        raise
    except Exception as exc:
        # A bug in one command must not take the bot down, nor leak internals to chat.
        log.exception("admin command %r by %s failed", ctx.text, ctx.actor)
        await ctx.record(key=key, scope=scope, error=f"internal error: {type(exc).__name__}")
        return "Sorry, that admin command failed unexpectedly; the bot's log has the details."
    if spec.permission != "change":  # changes record themselves (the write, or a no-op row)
        await ctx.record()
    return answer
