"""The ``/guardbot`` application command group: admin commands, Discord-style.

The group is built from the application's command declarations
(:mod:`adapters.admin`), so a command added there appears here with no code:
each becomes a subcommand (``guard enable`` a subcommand of the ``guard``
group) with typed options, which Discord shows as a form. A filled-in form is
turned back into the same command text that ``/admin`` in the console and
``/guardbot`` in Slack take, so the commands live once, behind one permission
check, in the application. The group is registered with
``default_permissions`` = Manage Server, so Discord hides it from other
members unless a server admin grants it; the application checks again at run
time (``[admin] users``, or Manage Server when ``discord_manage_guild`` is on),
since those defaults can be overridden.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import discord
from discord import app_commands

from adapters.admin import AdminCommands, ArgSpec, CommandSpec

RunAdmin = Callable[[discord.Interaction, str], Awaitable[None]]

DESCRIPTION = "Admin: settings, guards and decisions of guardbot"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _annotation(arg: ArgSpec, topics: list[str]) -> Any:
    """The option's type as discord.py reads it from a callback signature."""
    if arg.kind == "switch":
        return bool
    if arg.kind == "count":
        kind: Any = app_commands.Range[int, 1, arg.maximum]
    elif arg.kind == "topic":
        kind = Literal[tuple(topics)]
    else:
        kind = str
    return kind if arg.needed else kind | None


def _unset(arg: ArgSpec) -> object:
    return False if arg.kind == "switch" else None


def _command(
    spec: CommandSpec[Any], topics: list[str], run: RunAdmin
) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await run(interaction, spec.text(values))

    # discord.py reads options from the callback's signature, so give it one per argument.
    params = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=discord.Interaction),
        *(
            inspect.Parameter(
                a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_annotation(a, topics),
                default=inspect.Parameter.empty if a.needed else _unset(a),
            )
            for a in sorted(spec.args, key=lambda a: not a.needed)
        ),
    ]  # fmt: skip
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = {  # type: ignore[attr-defined]
        a.name: a.help for a in spec.args
    }
    # The signature above is the real one; mypy only sees ``**values``.
    built: Any = callback
    return app_commands.Command(
        name=spec.words[-1], description=_capital(spec.help), callback=built
    )


class GuardbotCommands(app_commands.Group):
    """``/guardbot …``; every subcommand ends in ``run(interaction, command_text)``."""

    def __init__(self, commands: AdminCommands[Any], run: RunAdmin) -> None:
        super().__init__(
            name="guardbot",
            description=DESCRIPTION,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        topics = commands.topics()
        groups: dict[str, app_commands.Group] = {}
        for spec in commands.commands:
            parent: app_commands.Group = self
            if len(spec.words) > 1:
                word = spec.words[0]
                if word not in groups:
                    help_ = commands.groups.get(word, word)
                    groups[word] = app_commands.Group(
                        name=word, description=_capital(help_), parent=self
                    )
                parent = groups[word]
            parent.add_command(_command(spec, topics, run))
