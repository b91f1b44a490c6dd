"""A reply shown while it is generated: cut into messages, updated at a bounded rate.

Slack (chat.update, or its streaming methods) and Discord (message edits) show
a streamed reply the same way, so what they share lives here. :class:`Layout`
cuts the growing text into platform-sized messages; a message, once full, is
sealed and never changes again (the next one continues where it stopped), and
a code fence left open is closed in what is shown and reopened in the
continuation. :class:`LiveReply` is the ``ReplyView`` the pipeline talks to:
``show`` only records the latest text, and one task it owns pushes that text
to the platform no more often than the interval allows. Text released while an
update is in flight (including a 429 that the platform client waits out) is
therefore merged into the next update, the latest text winning. A platform
failure is recorded, never raised; :meth:`LiveReply.finish` makes the reply
read the decision's text and returns what went wrong, for the delivery record,
and :meth:`LiveReply.annotate` puts the platform's update count and failures on
the decision's stream record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from adapters.message_split import CLOSE, open_fence, split_message
from middleware.types import StreamRecord

log = logging.getLogger("guardbot.live")

_BREAKS = ("\n\n", "\n", " ")  # where a full message is best cut, best first
# What a reply cut off at shutdown ends on, after the part of it already shown (which
# was screened and is on record, so it stays); the bot leaves the view on it.
CUT_OFF_NOTE = "[cut off: I was restarted before I could finish. Please ask again.]"


def _as_is(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Style:
    """How a platform shows text: its message limit and its markup."""

    limit: int
    render: Callable[[str], str] = _as_is  # reply text -> the platform's markup
    # False where text can only be appended (Slack's streams): the growing message
    # cannot close a fence it would have to remove later; sealed ones still close it.
    close_open_fence: bool = True


class SurfaceError(Exception):
    """A platform call failed (after the client's own retries); the message is for the log."""


class Restyled(Exception):  # noqa: N818 - a signal, not a failure
    """The surface changed its :class:`Style` before showing anything: lay out again."""


class Surface(Protocol):
    """One reply's messages on a platform, addressed by index (0 = the first)."""

    def style(self, streamed: bool) -> Style:
        """How text is shown; ``streamed``: the reply is shown while it grows."""
        ...

    async def put(self, index: int, text: str, shown: str | None, *, sealed: bool) -> bool:
        """Make message ``index`` read ``text``; False when that took no platform call.

        ``shown`` is what it reads now (None: post it); ``sealed``: it will not
        change again. Raises :class:`SurfaceError`, or :class:`Restyled`.
        """
        ...

    async def remove(self, index: int) -> None:
        """Delete message ``index`` (the last one); raises :class:`SurfaceError`."""
        ...

    async def settle(self, posted: bool) -> None:
        """The reply is final; ``posted``: at least one message of it is up."""
        ...


class Layout:
    """A growing text as messages of at most ``style.limit`` characters, once rendered."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self._reset()

    def _reset(self) -> None:
        self.source = ""  # the text laid out last
        self.sealed: list[str] = []  # rendered, final
        self._start = 0  # where the open (last) message starts in ``source``
        self._reopen: str | None = None  # the fence it reopens (None outside code)

    def update(self, text: str) -> list[str]:
        """Every message's text for ``text``; sealed ones are as before if ``text`` extends them."""
        if not text.startswith(self.source[: self._start]):
            self._reset()  # a different text (a retraction): start over
        # What the open message showed last. Where text can only be appended, a cut
        # cannot take that back, even mid-word; where messages are edited it may move
        # a partial word on to the next message, so no word is ever split.
        keep = not self.style.close_open_fence and text.startswith(self.source)
        floor = len(self.source) - self._start if keep else 0
        self.source = text
        while True:
            tail = text[self._start :]
            if len(self._piece(tail, closed=True)) <= self.style.limit:
                if not tail.strip():
                    return list(self.sealed)
                return [*self.sealed, self._piece(tail, closed=self.style.close_open_fence)]
            cut = self._cut(tail, floor)
            self.sealed.append(self._piece(tail[:cut], closed=True))
            self._reopen = open_fence(tail[:cut], self._reopen)
            rest = tail[cut:]
            gap = len(rest) - len(rest.lstrip("\n" if rest.startswith("\n") else " "))
            self._start += cut + gap
            floor = 0

    def _piece(self, raw: str, *, closed: bool) -> str:
        body = f"{self._reopen}\n{raw}" if self._reopen is not None else raw
        if closed and open_fence(raw, self._reopen) is not None:
            body += CLOSE.removeprefix("\n") if body.endswith("\n") else CLOSE
        return self.style.render(body)

    def _cut(self, tail: str, floor: int) -> int:
        """Where the open message is sealed: the longest fitting cut at a break."""
        limit = self.style.limit
        budget = limit - len(self._reopen or "") - 1 - len(CLOSE)
        while True:
            budget = max(1, min(budget, len(tail) - 1))
            cut = self._break(tail[:budget], floor)
            size = len(self._piece(tail[:cut], closed=True))
            if size <= limit or budget == 1:
                return cut
            # Rendering added characters (escapes): try a proportionally shorter window.
            budget = min(budget - 1, budget * limit // size)

    @staticmethod
    def _break(window: str, floor: int) -> int:
        low = max(floor, len(window) // 2)
        for mark in _BREAKS:
            at = window.rfind(mark, low)
            if at > 0:
                return at
        if 0 < floor <= len(window):
            return floor
        at = window.rfind(" ")
        return at if at > 0 else len(window)


class LiveReply:
    """The ``ReplyView`` of one reply: the pipeline shows text, the adapter finishes it.

    ``clock`` and ``sleep`` are injectable so tests can prove the update rate
    without waiting in real time.
    """

    def __init__(
        self,
        surface: Surface,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.surface = surface
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._text = ""  # the latest text wanted
        self._streamed = False  # show() or retract() was called
        self._final = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._layout: Layout | None = None
        self._sealed: set[int] = set()
        self._last = -math.inf  # clock() at the last platform write
        self.shown: list[str] = []  # what each message reads on the platform now
        self.failures: list[str] = []
        self.updates = 0  # platform writes made
        self.retracted = False
        self._complete = False  # the final text is up, every message of it

    # -- ReplyView ------------------------------------------------------------

    async def show(self, text: str) -> None:
        if self._final or self.retracted:
            return  # nothing is added to a finished or retracted reply
        self._text, self._streamed = text, True
        self._kick()

    async def retract(self, text: str) -> None:
        if self._final:
            return
        self._text, self._streamed, self.retracted = text, True, True
        self._kick()

    # -- the adapter's side ---------------------------------------------------

    async def finish(self, text: str) -> tuple[bool, str | None]:
        """Make the reply read ``text``.

        Returns whether it does, and every failure on the way (an update that
        failed and was overtaken is still reported), for the delivery record.
        """
        self._text, self._final = text, True
        if self._task is not None and self._task.done():
            self._task = None  # cancelled in an earlier finish (shutdown): finish anew
        self._kick()
        assert self._task is not None
        await self._task
        return self._complete, "; ".join(self.failure_summary()) or None

    async def cut_off(self, unanswered: str, note: str) -> tuple[bool, str | None]:
        """Shutdown: end the reply now, keeping what the pipeline released.

        Released text was screened and is on record (each chunk is committed
        before it is shown), so it stays, with ``note`` after it; with nothing
        released the reply reads ``unanswered``, and a retraction stays as it is.
        """
        if self.retracted or not self._text:
            text = self._text if self.retracted else unanswered
        else:
            text = f"{self._text}\n\n{note}"
        return await self.finish(text)

    def failure_summary(self) -> list[str]:
        """Each distinct failure once, in order, with how often it happened."""
        counts = Counter(self.failures)
        return [f"{f} ({counts[f]} times)" if counts[f] > 1 else f for f in counts]

    def annotate(self, record: StreamRecord | None) -> None:
        """Put the platform's side of a streamed reply on its record, before it is stored.

        The pipeline counts the updates it asked for; the platform made fewer
        (text released within the interval, or during a 429, went out in one
        update), and only the adapter sees which of them failed.
        """
        if record is not None:
            record.updates = self.updates
            record.delivery_errors = self.failure_summary()

    @property
    def posted(self) -> bool:
        return bool(self.shown)

    async def close(self) -> None:
        """Stop updating (the answer was abandoned); whatever is shown stays."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live reply")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            wait = self._last + self.interval_s - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._wake.clear()
            final = self._final
            await self._sync(final)
            if final:
                await self.surface.settle(bool(self.shown))
                return

    def _want(self, final: bool) -> list[str]:
        style = self.surface.style(self._streamed)
        if not self._streamed:
            # Nothing was streamed: laid out exactly as a whole reply always was.
            return split_message(style.render(self._text), style.limit)
        if self._layout is None or self._layout.style != style:
            self._layout = Layout(style)
        return self._layout.update(self._text)

    async def _sync(self, final: bool) -> None:
        want = self._want(final)
        if final and not want:
            self.failures.append("the reply was empty; nothing was sent")
            return
        for index, text in enumerate(want):
            before = self.shown[index] if index < len(self.shown) else None
            sealed = final or index < len(want) - 1
            if before == text and (not sealed or index in self._sealed):
                continue
            try:
                wrote = await self.surface.put(index, text, before, sealed=sealed)
            except Restyled:
                return await self._sync(final)  # only before anything was shown
            except SurfaceError as exc:
                self._last = self._clock()  # a failed call counts against the rate too
                self._failed(index, len(want), str(exc))
                return  # the next round tries again, with the latest text
            if wrote:
                self._last = self._clock()
                self.updates += 1
            if before is None:
                self.shown.append(text)
            else:
                self.shown[index] = text
            if sealed:
                self._sealed.add(index)
        # A shorter text than shown (a retraction): what it replaced must go.
        while len(self.shown) > max(len(want), 1):
            try:
                await self.surface.remove(len(self.shown) - 1)
            except SurfaceError as exc:
                self._failed(len(self.shown) - 1, len(want), str(exc))
                return
            self.shown.pop()
        self._complete = final
        return None

    def _failed(self, index: int, count: int, error: str) -> None:
        where = f" (after {index} of {count} parts)" if index else ""
        log.warning("a reply update failed: %s%s", error, where)
        self.failures.append(error + where)
