"""What every admin command handler receives: the parsed command, and a context.

The context holds the request (who, where), and the narrow :class:`AdminHost`
the commands read and write through: runtime settings, the decision log,
today's policy. It is a protocol, not the bot, so the admin commands sit below
``bot.app`` in the import graph. Kept apart from the handlers so the settings
commands and the decision commands share one notion of "this channel" (the
scope ``--here`` names) and one way of quoting user-supplied text back safely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters.admin import AdminCommands, CommandSpec
from adapters.render import quote
from bot.config.keys import SettingError
from bot.config.runtime import GLOBAL, channel_scope
from bot.config.schema import Config
from bot.replay.rerun import ReplayHost
from middleware.types import ChatRequest

AUDIT_COMMAND_CHARS = 500
DEFAULT_COUNT = 10


class AdminHost(ReplayHost, Protocol):
    """What admin commands use of the bot: its settings and log (from ReplayHost), the
    config (for who is an admin), the effective config of a channel, and whether the
    offline echo model answers."""

    @property
    def config(self) -> Config: ...

    @property
    def offline(self) -> bool: ...

    def effective_config(self, request: ChatRequest) -> tuple[Config, str]: ...


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: ``name`` is the registry's, the rest are its arguments by name."""

    name: str
    key: str | None = None
    value: str | None = None  # `set`: the raw value text
    name_arg: str | None = None  # `guard ...`: the guard's name
    command: str | None = None  # `help`: the topic
    decision: str | None = None  # `why`: the decision id
    count: int = DEFAULT_COUNT
    blocked: bool = False
    here: bool = False
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Context:
    host: AdminHost
    registry: Registry
    request: ChatRequest
    actor: str
    text: str  # the command as typed, clipped for the audit row

    @property
    def here(self) -> str:
        return channel_scope(self.request.platform, self.request.channel_id)

    def scope(self, here: bool) -> str:
        if here and (not self.request.channel_id or ":" in self.request.channel_id):
            raise SettingError("--here needs the channel the command was sent from; none was given")
        return self.here if here else GLOBAL

    async def record(
        self,
        *,
        allowed: bool = True,
        key: str | None = None,
        scope: str | None = None,
        error: str | None = None,
    ) -> None:
        """One admin_actions row for a command that changed nothing."""
        await self.host.log.record_admin_action(
            actor=self.actor,
            platform=self.request.platform,
            channel_id=self.request.channel_id,
            command=self.text,
            key=key,
            scope=scope,
            allowed=allowed,
            error=error,
        )

    def where(self, scope: str) -> str:
        if scope == GLOBAL:
            return "globally"
        return f"in this channel ({scope.removeprefix('channel:')})"


Handler = Callable[[Context, Command], Awaitable[str]]
Spec = CommandSpec[Handler]
Registry = AdminCommands[Handler]


def audit_text(command: str) -> str:
    return command if len(command) <= AUDIT_COMMAND_CHARS else command[:AUDIT_COMMAND_CHARS] + "…"


def show(value: Any, limit: int = 80) -> str:
    """A setting value for a one-line answer: text quoted and clipped, None as 'unset'."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + quote(value, limit) + '"'
    return str(value)
