"""The settings commands: help, status, set, reset and guard list.

Changes go through :class:`bot.config.runtime.RuntimeSettings`, which validates the
value against the config schema before anything is written and reloads the
overrides afterwards, so the next message already uses them. Answers say
what changed, where, what it was before, and whether a channel override
still wins somewhere.
"""

from __future__ import annotations

from datetime import timedelta

from bot.admin.context import Context, show
from bot.admin.parser import USAGE, Command
from bot.config.keys import (
    GUARD_FIELDS,
    PLAIN_KEYS,
    SECTIONS,
    SettingError,
    allowed,
    current_value,
    parse_key,
    uses_threshold,
)
from bot.config.runtime import GLOBAL
from middleware.types import utc_now

STATUS_WINDOW = timedelta(hours=24)
STATUS_SAMPLE = 2000
MODEL_HINT = "a model name such as gpt-4o-mini or llama3.1:8b"


async def help_text(ctx: Context, cmd: Command) -> str:
    if cmd.target is None:
        lines = ["Admin commands (scope: global by default, --here for this channel only):"]
        lines += [f"  {usage}  - {summary}" for usage, summary in USAGE.values()]
        lines.append("`help set` lists the settable keys and their allowed values.")
        return "\n".join(lines)
    usage, summary = USAGE[cmd.target]
    lines = [f"{usage}\n  {summary}"]
    if cmd.target in ("set", "reset"):
        lines.append("Keys:")
        for key, (section, field) in PLAIN_KEYS.items():
            what = MODEL_HINT if key == "model" else _allowed(section, field)
            lines.append(f"  {key}: {what}  ([{section}] {field})")
        lines.append(
            "  guard.NAME.threshold: a number (range depends on the guard kind)\n"
            "  guard.NAME.action: block, flag or redact\n"
            "  guard.NAME.on_error: block (fail-closed) or allow (fail-open)\n"
            "  guard.NAME.enabled: true or false"
        )
        lines.append("Channel values win over global ones, global over config.toml.")
    return "\n".join(lines)


def _allowed(section: str, field: str) -> str:
    return allowed(SECTIONS[section].model_fields[field])


def _origin(ctx: Context, key: str) -> str:
    """Where the effective value of ``key`` in this channel comes from."""
    settings = ctx.bot.settings
    if key in settings.overrides(ctx.here):
        return " [this channel]"
    if key in settings.overrides(GLOBAL):
        return " [global]"
    return ""


async def status(ctx: Context, cmd: Command) -> str:
    config, fingerprint = ctx.bot.effective_config(ctx.request)
    offline = ctx.bot.models.offline
    llm, p = config.llm, config.pipeline
    model = f"{show(llm.model)}{_origin(ctx, 'model')}"
    if offline:
        model += " (offline: the echo model answers)"
    lines = [
        f"Status for {ctx.here.removeprefix('channel:')} (config {fingerprint})",
        f"model: {model}, temperature {llm.temperature}{_origin(ctx, 'temperature')}",
        f"best_of: {p.best_of}{_origin(ctx, 'best_of')}, "
        f"selection: {p.selection}{_origin(ctx, 'selection')}",
        f"refusal: {show(p.refusal, 60)}{_origin(ctx, 'refusal')}",
        f"system_prompt: {show(llm.system_prompt, 60)}{_origin(ctx, 'system_prompt')}",
        "guards:",
        *guard_lines(ctx),
        await block_rate(ctx),
    ]
    lines += _override_lines(ctx)
    return "\n".join(lines)


async def guard_list(ctx: Context, cmd: Command) -> str:
    return "\n".join(["Guards in this channel:", *guard_lines(ctx)])


def guard_lines(ctx: Context) -> list[str]:
    config = ctx.bot.settings.effective_for_scope(ctx.here)
    if not config.guards:
        return ["  (none configured)"]
    lines = []
    for g in config.guards:
        marks = {f: _origin(ctx, f"guard.{g.name}.{f}") for f in GUARD_FIELDS}
        threshold = (
            f", threshold {show(g.threshold)}{marks['threshold']}" if uses_threshold(g) else ""
        )
        lines.append(
            f"  {g.name} ({getattr(g, 'kind', '?')}, {g.stage}): "
            f"{'on' if g.enabled else 'OFF'}{marks['enabled']}, "
            f"action {g.action}{marks['action']}, on_error {g.on_error}{marks['on_error']}"
            f"{threshold}"
        )
    return lines


async def block_rate(ctx: Context) -> str:
    since = utc_now() - STATUS_WINDOW
    decisions = await ctx.bot.log.query(since=since, limit=STATUS_SAMPLE)
    if not decisions:
        return "recent block rate: no messages in the last 24h"
    blocked = sum(1 for d in decisions if d.blocked)
    more = "+" if len(decisions) >= STATUS_SAMPLE else ""
    return (
        f"recent block rate: {blocked} of {len(decisions)}{more} messages blocked "
        f"in the last 24h ({blocked / len(decisions):.1%})"
    )


def _override_lines(ctx: Context) -> list[str]:
    settings = ctx.bot.settings
    lines = []
    for scope, label in ((GLOBAL, "global"), (ctx.here, "this channel")):
        found = settings.overrides(scope)
        if found:
            pairs = ", ".join(f"{k}={show(v, 30)}" for k, v in sorted(found.items()))
            lines.append(f"overrides ({label}): {pairs}")
    others = len([s for s in settings.rows if s not in (GLOBAL, ctx.here)])
    if others:
        lines.append(f"{others} other channel(s) have their own overrides (`guardbot settings`)")
    for (scope, key), why in sorted(settings.problems.items()):
        lines.append(f"ignored setting {key} ({scope}): {why}")
    return lines


async def set_value(ctx: Context, cmd: Command) -> str:
    assert cmd.key is not None and cmd.value is not None
    settings = ctx.bot.settings
    scope = ctx.scope(cmd.here)
    before = settings.effective_for_scope(scope)
    key, value = settings.validate(scope, cmd.key, cmd.value)
    previous = current_value(before, key)
    if key.name in settings.overrides(scope) and settings.overrides(scope)[key.name] == value:
        await ctx.record(key=key.name, scope=scope, error="unchanged: same value")
        return f"{key.name} is already {show(value)} {ctx.where(scope)}; nothing changed."
    await _write(ctx, scope, key.name, value)
    lines = [
        f"Set {key.name} = {show(value)} {ctx.where(scope)} (was {show(previous)}). "
        "It applies from the next message."
    ]
    if scope == GLOBAL:
        shadows = settings.scopes_overriding(key.name)
        if ctx.here in shadows:
            lines.append("Note: this channel has its own value, which still wins here.")
        elif shadows:
            lines.append(f"Note: {len(shadows)} channel(s) have their own value, which wins there.")
    if key.name == "temperature" and before.pipeline.temperatures is not None:
        # Per-candidate temperatures in config.toml take precedence over the single one.
        lines.append(
            "Note: [pipeline] temperatures is set in the config, and those per-candidate "
            "values are used instead of this one."
        )
    return "\n".join(lines)


async def reset_value(ctx: Context, cmd: Command) -> str:
    assert cmd.key is not None
    settings = ctx.bot.settings
    scope = ctx.scope(cmd.here)
    settings.effective_for_scope(scope)  # finds the rows it has to ignore
    stale = settings.problems.get((scope, cmd.key))
    if stale is not None:
        # A row today's config.toml no longer accepts (its guard was removed): let it go.
        await _write(ctx, scope, cmd.key, None)
        return f"Removed {cmd.key} {ctx.where(scope)}; it was ignored ({stale})."
    key = parse_key(cmd.key, settings.base)
    if key.name not in settings.overrides(scope):
        raise SettingError(f"{key.name} has no override {ctx.where(scope)}; nothing to reset")
    previous = current_value(settings.effective_for_scope(scope), key)
    await _write(ctx, scope, key.name, None)
    now = current_value(settings.effective_for_scope(scope), key)
    inherits = scope != GLOBAL and key.name in settings.overrides(GLOBAL)
    origin = "the global value" if inherits else "config.toml"
    return (
        f"Reset {key.name} {ctx.where(scope)}: now {show(now)} from {origin} "
        f"(was {show(previous)})."
    )


async def _write(ctx: Context, scope: str, key: str, value: object) -> None:
    await ctx.bot.settings.write(
        scope,
        key,
        value,
        actor=ctx.actor,
        platform=ctx.request.platform,
        channel_id=ctx.request.channel_id,
        command=ctx.text,
    )
