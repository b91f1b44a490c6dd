"""The console's view of a streamed reply: released chunks print as they come.

A terminal cannot edit what it printed the way Slack and Discord edit a
message, so each ``show`` prints only what is new since the last one, and a
``retract`` prints a clear notice followed by the text that replaces the
reply (the refusal, or what was shown plus a note that the stream broke off).
The "thinking…" line of the prompt must be gone before the first text
appears: the view says when it has text (``has_text``) and waits for
``may_print`` before printing anything.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

from adapters.render import plain

RETRACTED = "[retracted: the reply above was withdrawn; it is replaced by]"


class ConsoleReplyView:
    """A :class:`~middleware.pipeline.streaming.ReplyView` printing to ``out``."""

    def __init__(self, out: TextIO, *, prefix: str = "", margin: str = "") -> None:
        self.out = out
        self.prefix = prefix  # "bot> " at a terminal, before the first line of a reply
        self.margin = margin  # what later lines start with there
        self.printed = ""  # the reply text printed so far (unescaped)
        self.has_text = asyncio.Event()
        self.may_print = asyncio.Event()

    async def show(self, text: str) -> None:
        self.has_text.set()
        await self.may_print.wait()
        if not text.startswith(self.printed):  # not an extension: print it as a replacement
            await self.retract(text)
            return
        new, first = text[len(self.printed) :], not self.printed
        self.printed = text
        self._write(new, first=first)

    async def retract(self, text: str) -> None:
        self.has_text.set()
        await self.may_print.wait()
        if self.printed:
            self.out.write("\n" + RETRACTED + "\n")
        self.printed = ""
        self._write(text, first=True)
        self.printed = text

    def close(self) -> None:
        """End the reply's last line."""
        if self.printed and not self.printed.endswith("\n"):
            self.out.write("\n")
        self.out.flush()

    def _write(self, text: str, *, first: bool) -> None:
        shown = plain(text, one_line=False)
        if self.margin:
            shown = shown.replace("\n", "\n" + self.margin)
        self.out.write((self.prefix if first else "") + shown)
        self.out.flush()
