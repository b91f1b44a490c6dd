"""What posting to Discord needs besides the reply itself: typing, no pings, errors.

Nothing model-written may ping anyone, so every send and edit carries
:data:`NO_PINGS` (``AllowedMentions.none()``): ``@everyone``, ``@here``, role
and user mentions in a reply render as text and notify nobody (the client
default is the same, as a second line of defence). A failed REST call (an
HTTP error, or the connection dropping or timing out) becomes one readable
line for the decision log (:func:`describe_error`). The reply itself is
posted, split and edited by :mod:`adapters.discord.stream`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiohttp
import discord

log = logging.getLogger("guardbot.discord")

MESSAGE_LIMIT = 2000
NO_PINGS = discord.AllowedMentions.none()
TYPING_REFRESH_S = 8.0  # Discord shows "is typing…" for about 10 s per request
TYPING_SETTLE_S = 2.0  # longest a reply waits for its first typing request to land
THREAD_NAME = "guardbot"  # fixed: a thread's title must never carry unscreened user text
# What a REST call can fail with besides a Discord error: the connection dropping or timing out.
SEND_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError)


class Typing:
    """Shows "is typing…" beside the work, without delaying it, until stopped.

    ``channel.typing()`` as a context manager awaits its first request before
    the body starts and fails the body when typing is forbidden; here typing
    runs beside the body and its errors only get logged. :meth:`stop` waits
    (briefly) for the first request, so it can never land after the reply and
    leave a stale indicator. A streamed reply stops it at its first chunk.
    """

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self.channel = channel
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_typing(), name="discord typing")

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.channel.typing()
            except Exception as exc:  # cosmetic: never let typing cost a reply
                log.debug("typing indicator failed: %s", exc)
                return
            finally:
                self._first.set()
            await asyncio.sleep(TYPING_REFRESH_S)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(TYPING_SETTLE_S):
                    await self._first.wait()
        finally:
            task.cancel()
            await asyncio.wait({task})


@asynccontextmanager
async def typing_while(channel: discord.abc.Messageable) -> AsyncIterator[Typing]:
    """Show "is typing…" while the body runs (or until it stops the indicator itself)."""
    typing = Typing(channel)
    typing.start()
    try:
        yield typing
    finally:
        await typing.stop()


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
