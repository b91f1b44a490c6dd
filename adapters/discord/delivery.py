"""Posting a screened reply to Discord: typing indicator, splitting, no pings.

Nothing model-written may ping anyone, so every send carries
``AllowedMentions.none()``: ``@everyone``, ``@here``, role and user mentions
in a reply render as text and notify nobody (the client default is the
same, as a second line of defence). Replies over Discord's 2,000-character
cap are split without breaking words or code blocks. A failed send (an
HTTP error, or the connection dropping or timing out) is returned as a
readable error for the decision log, never raised, so no delivery stays
"pending".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiohttp
import discord

from adapters.message_split import split_message

log = logging.getLogger("guardbot.discord")

MESSAGE_LIMIT = 2000
NO_PINGS = discord.AllowedMentions.none()
TYPING_REFRESH_S = 8.0  # Discord shows "is typing…" for about 10 s per request
TYPING_SETTLE_S = 2.0  # longest a reply waits for its first typing request to land
THREAD_NAME = "guardbot"  # fixed: a thread's title must never carry unscreened user text
# What a REST call can fail with besides a Discord error: the connection dropping or timing out.
SEND_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError)


@asynccontextmanager
async def typing_while(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show "is typing…" while the body runs, without delaying it.

    ``channel.typing()`` as a context manager awaits its first request before
    the body starts and fails the body when typing is forbidden; here typing
    runs beside the body and its errors only get logged. The first request is
    awaited (briefly) before leaving, so it can never land after the reply and
    leave a stale indicator.
    """
    first = asyncio.Event()

    async def keep_typing() -> None:
        while True:
            try:
                await channel.typing()
            except Exception as exc:  # cosmetic: never let typing cost a reply
                log.debug("typing indicator failed: %s", exc)
                return
            finally:
                first.set()
            await asyncio.sleep(TYPING_REFRESH_S)

    task = asyncio.create_task(keep_typing(), name="discord typing")
    try:
        yield
        with suppress(TimeoutError):
            async with asyncio.timeout(TYPING_SETTLE_S):
                await first.wait()
    finally:
        task.cancel()
        await asyncio.wait({task})


def describe(exc: discord.HTTPException) -> str:
    """A failed request as one line: status, Discord's error code and message."""
    code = f" (code {exc.code})" if exc.code else ""
    text = exc.text or type(exc).__name__
    return f"HTTP {exc.status}{code}: {text}"[:300]


def describe_error(exc: BaseException) -> str:
    """Any failed REST call as one line (see :data:`SEND_ERRORS`)."""
    if isinstance(exc, discord.HTTPException):
        return describe(exc)
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}"[:300] if detail else type(exc).__name__


async def deliver(
    target: discord.abc.Messageable,
    text: str,
    *,
    reference: discord.MessageReference | None = None,
) -> tuple[list[discord.Message], str | None]:
    """Send ``text`` in pieces; returns the messages sent and the error, if any."""
    pieces = split_message(text, MESSAGE_LIMIT)
    if not pieces:
        return [], "the reply was empty; nothing was sent"
    sent: list[discord.Message] = []
    for index, piece in enumerate(pieces):
        try:
            if index == 0 and reference is not None:
                message = await target.send(
                    piece, allowed_mentions=NO_PINGS, reference=reference, mention_author=False
                )
            else:
                message = await target.send(piece, allowed_mentions=NO_PINGS)
        except SEND_ERRORS as exc:
            where = f" (after {index} of {len(pieces)} parts)" if index else ""
            log.warning("could not send a reply%s: %s", where, describe_error(exc))
            return sent, describe_error(exc) + where
        sent.append(message)
    return sent, None
