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

A send whose answer was lost (the connection dropped after Discord created
the message) is tried again by the next update, so every send carries a nonce
with ``enforce_nonce`` (see :func:`reply_nonce`): Discord then answers a repeat
with the message it already created instead of posting the reply twice. The
nonce names the event and how many messages this reply had created before, so
it is the same for every try of one send (discord.py's own retries reuse the
payload) and new for the next message.
"""

from __future__ import annotations

import hashlib

import discord

from adapters.discord.delivery import MESSAGE_LIMIT, NO_PINGS, SEND_ERRORS, Typing, describe_error
from adapters.live import Style, SurfaceError

_STYLE = Style(limit=MESSAGE_LIMIT)
NONCE_CHARS = 25  # Discord's limit for a message nonce


def reply_nonce(event: int, created: int) -> str:
    """The nonce of the send that creates a reply's message number ``created`` (from 0).

    Readable (``<event id>.<n>``) while it fits; hashed otherwise, still stable.
    """
    nonce = f"{event}.{created}"
    if len(nonce) <= NONCE_CHARS:
        return nonce
    return hashlib.blake2b(nonce.encode(), digest_size=12).hexdigest()


class DiscordMessages:
    """The :class:`adapters.live.Surface` of one reply: its messages in one channel."""

    def __init__(
        self,
        target: discord.abc.Messageable,
        *,
        event: int,
        reference: discord.MessageReference | None = None,
        typing: Typing | None = None,
    ) -> None:
        self.target = target
        self.event = event  # the id of the message answered: the nonces derive from it
        self.reference = reference
        self.typing = typing
        self.messages: list[discord.Message] = []
        self.created = 0  # messages this reply created: a failed send does not count

    def style(self, streamed: bool) -> Style:
        return _STYLE

    async def put(self, index: int, text: str, shown: str | None, *, sealed: bool) -> bool:
        if text == shown:
            return False
        if self.typing is not None:
            await self.typing.stop()  # the reply is showing now
        try:
            if index == len(self.messages):
                self.messages.append(await self._send(text, first=index == 0))
            else:  # shown, or sent with its follow-up edit failed: the message is there
                try:
                    edited = await self.messages[index].edit(
                        content=text, allowed_mentions=NO_PINGS
                    )
                except discord.NotFound:  # deleted meanwhile: the reply must still be readable
                    edited = await self._send(text, first=False)
                self.messages[index] = edited
            if self.messages[index].content.strip() != text.strip():
                # An earlier try's message (its answer was lost), with that try's text.
                self.messages[index] = await self.messages[index].edit(
                    content=text, allowed_mentions=NO_PINGS
                )
        except SEND_ERRORS as exc:
            raise SurfaceError(describe_error(exc)) from exc
        return True

    async def _send(self, text: str, *, first: bool) -> discord.Message:
        # discord.py sends any nonce with enforce_nonce: a repeat within a few minutes
        # returns the message the first try created instead of posting it again.
        nonce = reply_nonce(self.event, self.created)
        if first and self.reference is not None:
            sent = await self.target.send(
                text,
                allowed_mentions=NO_PINGS,
                reference=self.reference,
                mention_author=False,
                nonce=nonce,
            )
        else:
            sent = await self.target.send(text, allowed_mentions=NO_PINGS, nonce=nonce)
        self.created += 1
        return sent

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
