"""The settings commands: help, status, set, reset and guard list.

Changes go through :class:`bot.config.runtime.RuntimeSettings`, which validates the
value against the config schema before anything is written and reloads the
overrides afterwards, so the next message already uses them. Answers say
what changed, where, what it was before, and whether a channel override
still wins somewhere.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.admin.context import Command, Context, Handler, show
from bot.config.keys import GUARD_FIELDS, SettingError, current_value, parse_key, uses_threshold
from bot.config.runtime import GLOBAL
from bot.config.schema import Config
from middleware.types import utc_now

STATUS_WINDOW = timedelta(hours=24)


def _origin(ctx: Context, key: str) -> str:
    """Where the effective value of ``key`` in this channel comes from."""
    settings = ctx.host.settings
    if key in settings.overrides(ctx.here):
        return " [this channel]"
    if key in settings.overrides(GLOBAL):
        return " [global]"
    return ""


async def status(ctx: Context, cmd: Command) -> str:
    config, fingerprint = ctx.host.effective_config(ctx.request)
    offline = ctx.host.offline
    llm, p = config.llm, config.pipeline
    model = f"{show(llm.model)}{_origin(ctx, 'model')}"
    if offline:
        model += " (offline: the echo model answers)"
    lines = [
        f"Status for {ctx.here.removeprefix('channel:')} (config {fingerprint})",
        f"model: {model}, temperature {llm.temperature}{_origin(ctx, 'temperature')}",
        f"best_of: {p.best_of}{_origin(ctx, 'best_of')}, "
        f"selection: {p.selection}{_origin(ctx, 'selection')}",
        streaming_line(ctx, config),
        f"refusal: {show(p.refusal, 60)}{_origin(ctx, 'refusal')}",
        f"system_prompt: {show(llm.system_prompt, 60)}{_origin(ctx, 'system_prompt')}",
        "guards:",
        *guard_lines(ctx),
        await block_rate(ctx),
    ]
    lines += _override_lines(ctx)
    return "\n".join(lines)


def streaming_line(ctx: Context, config: Config) -> str:
    """Whether replies stream here, and exactly what best-of-N does to it.

    The pipeline streams a single candidate only (``Pipeline.run``): with
    ``best_of > 1`` every candidate is generated and screened whole, and the
    chosen reply is shown whole once chosen, so no text of a discarded
    candidate is ever shown.
    """
    p = config.pipeline
    origin = _origin(ctx, "stream")
    if not p.stream:
        return f"streaming: off{origin} (replies are shown whole once screened)"
    if ctx.request.platform == "slack" and config.slack.stream_api == "off":
        return (
            f"streaming: on{origin}, but not in Slack ([slack] stream_api = off): "
            "replies are posted whole once screened"
        )
    if p.best_of > 1:
        chosen = (
            "the first candidate to pass its output guards is shown whole and the others "
            "are cancelled"
            if p.selection == "first"
            else f"the reply chosen by {p.selection} is shown whole once it is chosen"
        )
        return (
            f"streaming: on{origin}, but not with best_of {p.best_of}: {chosen}; "
            "nothing from a discarded candidate is ever shown"
        )
    return (
        f"streaming: on{origin}: chunks of {p.chunk_chars}+ chars, each shown only after "
        f"the output guards passed it ({p.context_chars} chars of context); best_of > 1 "
        "turns it off: the chosen reply is then shown whole"
    )


async def guard_list(ctx: Context, cmd: Command) -> str:
    return "\n".join(["Guards in this channel:", *guard_lines(ctx)])


def guard_lines(ctx: Context) -> list[str]:
    config = ctx.host.settings.effective_for_scope(ctx.here)
    if not config.guards:
        return ["  (none configured)"]
    lines = []
    for g in config.guards:
        marks = {f: _origin(ctx, f"guard.{g.name}.{f}") for f in GUARD_FIELDS}
        threshold = (
            f", threshold {show(g.threshold)}{marks['threshold']}" if uses_threshold(g) else ""
        )
        lines.append(
            f"  {g.name} ({g.kind}, {g.stage}): "
            f"{'on' if g.enabled else 'OFF'}{marks['enabled']}, "
            f"action {g.action}{marks['action']}, on_error {g.on_error}{marks['on_error']}"
            f"{threshold}"
        )
    return lines


async def block_rate(ctx: Context) -> str:
    """Counted by the log over the whole window (not a sample of its newest rows)."""
    since = utc_now() - STATUS_WINDOW
    data = await ctx.host.log.stats(since=since)
    total = int(data.get("decisions", 0))
    if not total:
        return "recent block rate: no messages in the last 24h"
    blocked = int(data.get("actions", {}).get("blocked", 0))
    return (
        f"recent block rate: {blocked} of {total} messages blocked "
        f"in the last 24h ({blocked / total:.1%})"
    )


def _override_lines(ctx: Context) -> list[str]:
    settings = ctx.host.settings
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
    return await _changing(ctx, cmd, _set)


async def reset_value(ctx: Context, cmd: Command) -> str:
    return await _changing(ctx, cmd, _reset)


async def guard_enable(ctx: Context, cmd: Command) -> str:
    return await set_value(ctx, _guard_setting(cmd, "enabled", "true"))


async def guard_disable(ctx: Context, cmd: Command) -> str:
    return await set_value(ctx, _guard_setting(cmd, "enabled", "false"))


async def guard_threshold(ctx: Context, cmd: Command) -> str:
    return await set_value(ctx, _guard_setting(cmd, "threshold", cmd.value))


def _guard_setting(cmd: Command, field: str, value: str | None) -> Command:
    """``guard enable NAME`` is ``set guard.NAME.enabled true``, and so on."""
    return replace(cmd, name="set", key=f"guard.{cmd.name_arg}.{field}", value=value)


async def _changing(ctx: Context, cmd: Command, change: Handler) -> str:
    """Run a change; a value the settings refuse is answered and recorded, not raised."""
    try:
        return await change(ctx, cmd)
    except SettingError as exc:
        scope = ctx.here if cmd.here else GLOBAL
        await ctx.record(key=cmd.key, scope=scope, error=str(exc))
        return f"Not changed: {exc}"


async def _set(ctx: Context, cmd: Command) -> str:
    assert cmd.key is not None and cmd.value is not None
    settings = ctx.host.settings
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


async def _reset(ctx: Context, cmd: Command) -> str:
    assert cmd.key is not None
    settings = ctx.host.settings
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
    await ctx.host.settings.write(
        scope,
        key,
        value,
        actor=ctx.actor,
        platform=ctx.request.platform,
        channel_id=ctx.request.channel_id,
        command=ctx.text,
    )
