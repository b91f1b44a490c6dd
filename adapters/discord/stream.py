"""A Discord reply as it is shown: the first released chunk is sent, later ones edit it.

Discord allows 5 message edits per 5 seconds per channel, so the reply is
edited at most once per ``[discord] min_edit_interval_s`` (the text released
meanwhile goes into the next edit); past 2,000 characters it continues in a
new message, and a code block cut there is closed in the first and reopened in
the next, in every state shown (see :mod:`adapters.live`). Every send and
edit carries ``AllowedMentions.none()``. "is typing…" shows until the first
chunk. A reply that was not streamed is sent whole, split as always. A message
deleted while it was being edited is sent again; any other failure is
recorded for the delivery, never raised.
"""

from __future__ import annotations

import discord

from adapters.discord.delivery import MESSAGE_LIMIT, NO_PINGS, SEND_ERRORS, Typing, describe_error
from adapters.live import Style, SurfaceError

_STYLE = Style(limit=MESSAGE_LIMIT)


class DiscordMessages:
    """The :class:`adapters.live.Surface` of one reply: its messages in one channel."""

    def __init__(
        self,
        target: discord.abc.Messageable,
        *,
        reference: discord.MessageReference | None = None,
        typing: Typing | None = None,
    ) -> None:
        self.target = target
        self.reference = reference
        self.typing = typing
        self.messages: list[discord.Message] = []

    def style(self, streamed: bool) -> Style:
        return _STYLE

    async def put(self, index: int, text: str, shown: str | None, *, sealed: bool) -> bool:
        if text == shown:
            return False
        if self.typing is not None:
            await self.typing.stop()  # the reply is showing now
        try:
            if shown is None:
                self.messages.append(await self._send(text, first=index == 0))
                return True
            try:
                edited = await self.messages[index].edit(content=text, allowed_mentions=NO_PINGS)
            except discord.NotFound:  # deleted meanwhile: the reply must still be readable
                edited = await self._send(text, first=False)
            self.messages[index] = edited
        except SEND_ERRORS as exc:
            raise SurfaceError(describe_error(exc)) from exc
        return True

    async def _send(self, text: str, *, first: bool) -> discord.Message:
        if first and self.reference is not None:
            return await self.target.send(
                text, allowed_mentions=NO_PINGS, reference=self.reference, mention_author=False
            )
        return await self.target.send(text, allowed_mentions=NO_PINGS)

    async def remove(self, index: int) -> None:
        try:
            await self.messages[index].delete()
        except discord.NotFound:
            pass  # already gone, which is what was wanted
        except SEND_ERRORS as exc:
            raise SurfaceError(describe_error(exc)) from exc
        del self.messages[index]

    async def settle(self, posted: bool) -> None:
        if self.typing is not None:
            await self.typing.stop()
