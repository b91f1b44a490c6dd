"""The ``/guardbot`` application command group: admin commands, Discord-style.

Each subcommand has typed options (Discord shows them as a form) and is
turned back into the same command text that ``/admin`` in the console and
``/guardbot`` in Slack take (see ``bot/admin/parser.py``), so the commands
live once, behind one permission check, in the application. The group is
registered with ``default_permissions`` = Manage Server, so Discord hides it
from other members unless a server admin grants it; the application checks
again at run time (``[admin] users``, or Manage Server when
``discord_manage_guild`` is on), since those defaults can be overridden.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import Literal

import discord
from discord import app_commands

RunAdmin = Callable[[discord.Interaction, str], Awaitable[None]]
Topic = Literal["help", "status", "set", "reset", "guard", "recent", "why", "stats", "replay"]

_HERE = "apply in this channel only (default: everywhere)"


def _q(value: str) -> str:
    return shlex.quote(value.strip())


def _with(text: str, *flags: tuple[bool, str]) -> str:
    return " ".join([text, *(flag for on, flag in flags if on)])


class GuardbotCommands(app_commands.Group):
    """``/guardbot …``; every subcommand ends in ``run(interaction, command_text)``."""

    guard = app_commands.Group(name="guard", description="Show or change the guards")

    def __init__(self, run: RunAdmin) -> None:
        super().__init__(
            name="guardbot",
            description="Admin: settings, guards and decisions of guardbot",
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self._run = run

    @app_commands.command(name="help", description="List the admin commands, or explain one")
    @app_commands.describe(command="the command to explain")
    async def help_(self, interaction: discord.Interaction, command: Topic | None = None) -> None:
        await self._run(interaction, f"help {command}" if command else "help")

    @app_commands.command(description="Model, guards, best-of-N, selection, recent block rate")
    async def status(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "status")

    @app_commands.command(name="set", description="Change a setting, everywhere or here")
    @app_commands.describe(
        key="the setting, e.g. best_of or refusal", value="its new value", here=_HERE
    )
    async def set_(
        self, interaction: discord.Interaction, key: str, value: str, here: bool = False
    ) -> None:
        await self._run(interaction, _with(f"set {_q(key)} {value.strip()}", (here, "--here")))

    @app_commands.command(description="Remove an override (back to global / config.toml)")
    @app_commands.describe(key="the setting to reset", here=_HERE)
    async def reset(self, interaction: discord.Interaction, key: str, here: bool = False) -> None:
        await self._run(interaction, _with(f"reset {_q(key)}", (here, "--here")))

    @guard.command(name="list", description="Every guard with its stage, action and state")
    async def guard_list(self, interaction: discord.Interaction) -> None:
        await self._run(interaction, "guard list")

    @guard.command(name="enable", description="Turn a guard on")
    @app_commands.describe(name="the guard's name (see /guardbot guard list)", here=_HERE)
    async def guard_enable(
        self, interaction: discord.Interaction, name: str, here: bool = False
    ) -> None:
        await self._run(interaction, _with(f"guard enable {_q(name)}", (here, "--here")))

    @guard.command(name="disable", description="Turn a guard off")
    @app_commands.describe(name="the guard's name (see /guardbot guard list)", here=_HERE)
    async def guard_disable(
        self, interaction: discord.Interaction, name: str, here: bool = False
    ) -> None:
        await self._run(interaction, _with(f"guard disable {_q(name)}", (here, "--here")))

    @guard.command(name="threshold", description="Set the score at which a guard blocks")
    @app_commands.describe(name="the guard's name", value="the new threshold", here=_HERE)
    async def guard_threshold(
        self, interaction: discord.Interaction, name: str, value: str, here: bool = False
    ) -> None:
        text = f"guard threshold {_q(name)} {_q(value)}"
        await self._run(interaction, _with(text, (here, "--here")))

    @app_commands.command(description="The last decisions")
    @app_commands.describe(
        count="how many (default 10)", blocked="only blocked messages", here="only this channel"
    )
    async def recent(
        self,
        interaction: discord.Interaction,
        count: app_commands.Range[int, 1, 50] | None = None,
        blocked: bool = False,
        here: bool = False,
    ) -> None:
        text = "recent" + (f" {count}" if count is not None else "")
        await self._run(interaction, _with(text, (blocked, "--blocked"), (here, "--here")))

    @app_commands.command(description="Explain one decision: verdicts, candidates, timings")
    @app_commands.describe(decision="the decision id (from /guardbot recent)")
    async def why(self, interaction: discord.Interaction, decision: str) -> None:
        await self._run(interaction, f"why {_q(decision)}")

    @app_commands.command(description="Counts, block rate and latency over a period")
    @app_commands.describe(since="how far back, e.g. 24h or 7d")
    async def stats(self, interaction: discord.Interaction, since: str | None = None) -> None:
        await self._run(interaction, "stats" + (f" --since {_q(since)}" if since else ""))

    @app_commands.command(description="Re-run recent decisions' guards under today's settings")
    @app_commands.describe(since="how far back, e.g. 24h")
    async def replay(self, interaction: discord.Interaction, since: str | None = None) -> None:
        await self._run(interaction, "replay" + (f" --since {_q(since)}" if since else ""))
