"""Every admin command, declared once: words, arguments, help, permission and handler.

The parser (:mod:`bot.admin.parser`) reads command text against these
declarations, ``help`` lists them, and the platforms derive their forms from
them: the console's ``/admin …`` and Slack's ``/guardbot …`` take the text,
Discord builds its ``/guardbot`` slash-command group
(:mod:`adapters.discord.commands`). Adding a command is one entry here.
"""

from __future__ import annotations

from adapters.admin import AdminCommands, ArgSpec, CommandSpec
from bot.admin.commands import (
    guard_disable,
    guard_enable,
    guard_list,
    guard_threshold,
    reset_value,
    set_value,
    status,
)
from bot.admin.context import Command, Context, Handler, Registry
from bot.admin.decisions import recent, replay, stats, why
from bot.config.keys import PLAIN_KEYS, SECTIONS, allowed

MAX_RECENT = 50
MODEL_HINT = "a model name such as gpt-4o-mini or llama3.1:8b"
HERE = ArgSpec("here", "apply in this channel only (default: everywhere)", "switch")
GUARD_NAME = ArgSpec("name", "the guard's name (see guard list)", metavar="NAME")


async def help_text(ctx: Context, cmd: Command) -> str:
    registry = ctx.registry
    if cmd.command is None:
        lines = ["Admin commands (scope: global by default, --here for this channel only):"]
        lines += [f"  {c.usage()}  - {c.help}" for c in registry.commands]
        lines.append("`help set` lists the settable keys and their allowed values.")
        return "\n".join(lines)
    found = registry.under(cmd.command)
    lines = [f"{c.usage()}\n  {c.help}" for c in found]
    if cmd.command in ("set", "reset"):
        lines.append("Keys:")
        for key, (section, field) in PLAIN_KEYS.items():
            what = MODEL_HINT if key == "model" else allowed(SECTIONS[section].model_fields[field])
            lines.append(f"  {key}: {what}  ([{section}] {field})")
        lines.append(
            "  guard.NAME.threshold: a number (range depends on the guard kind)\n"
            "  guard.NAME.action: block, flag or redact\n"
            "  guard.NAME.on_error: block (fail-closed) or allow (fail-open)\n"
            "  guard.NAME.enabled: true or false"
        )
        lines.append("Channel values win over global ones, global over config.toml.")
    return "\n".join(lines)


def _spec(
    words: str, help: str, handler: Handler, *args: ArgSpec, change: bool = False
) -> CommandSpec[Handler]:
    return CommandSpec(
        tuple(words.split()), help, handler, args, permission="change" if change else "read"
    )


SINCE = ArgSpec("since", "how far back, e.g. 24h or 7d", "option", required=False, example="24h")

REGISTRY: Registry = AdminCommands(
    commands=(
        _spec(
            "help", "list the commands, or explain one", help_text,
            ArgSpec("command", "the command to explain", "topic", False, "COMMAND"),
        ),
        _spec("status", "model, guards, best-of-N, selection, recent block rate", status),
        _spec(
            "set", "change a setting globally, or in this channel", set_value,
            ArgSpec("key", "the setting, e.g. best_of or refusal", metavar="KEY"),
            ArgSpec("value", "its new value", "text", metavar="VALUE"),
            HERE, change=True,
        ),
        _spec(
            "reset", "remove an override (back to global / config.toml)", reset_value,
            ArgSpec("key", "the setting to reset", metavar="KEY"), HERE, change=True,
        ),
        _spec("guard list", "every guard with its stage, action and state", guard_list),
        _spec("guard enable", "turn a guard on", guard_enable, GUARD_NAME, HERE,
              change=True),
        _spec("guard disable", "turn a guard off", guard_disable, GUARD_NAME, HERE,
              change=True),
        _spec(
            "guard threshold", "set the score at which a guard blocks", guard_threshold,
            GUARD_NAME, ArgSpec("value", "the new threshold", metavar="X"), HERE, change=True,
        ),
        _spec(
            "recent", "the last N decisions (default 10)", recent,
            ArgSpec("count", "how many (default 10)", "count", False, "N", maximum=MAX_RECENT),
            ArgSpec("blocked", "only blocked messages", "switch"),
            ArgSpec("here", "only this channel", "switch"),
        ),
        _spec(
            "why", "one decision explained: verdicts, candidates, timings", why,
            ArgSpec("decision", "the decision id (from recent)", metavar="ID"),
        ),
        _spec("stats", "counts, block rate and latency over a period", stats, SINCE),
        _spec(
            "replay", "re-run recent decisions' guards under today's settings", replay,
            SINCE,
        ),
    ),
    groups={"guard": "show or change the guards"},
)  # fmt: skip
