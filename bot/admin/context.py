"""What every admin command handler receives: the bot, the request, who and where.

Kept apart from the handlers so the settings commands and the decision
commands share one notion of "this channel" (the scope ``--here`` names) and
one way of quoting user-supplied text back safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.config.keys import SettingError
from bot.config.runtime import GLOBAL, channel_scope
from middleware.types import ChatRequest

if TYPE_CHECKING:
    from bot.app import GuardBot

AUDIT_COMMAND_CHARS = 500
# Mentions in quoted user text must not ping anyone when an admin reads it back.
_MENTION = re.compile(r"(<[!@#]|@(?=everyone|here|channel))")


@dataclass(frozen=True, slots=True)
class Context:
    bot: GuardBot
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
        await self.bot.log.record_admin_action(
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


def quote(text: str, limit: int = 80) -> str:
    """User or admin text on one line, clipped, with mentions defused."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return _MENTION.sub(lambda m: m.group(1) + "\u200b", flat)
