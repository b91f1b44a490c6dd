"""The chat prompt when a person types: prompt_toolkit, history, and a "thinking…" line.

A terminal gets what people expect from a prompt: line editing (arrows, Home,
End, Ctrl-R search), history kept across runs in a file beside the decision
log (mode 0600: it holds what was typed), a pasted block of several lines sent
as one message (bracketed paste; Esc Enter adds a line by hand), and a
"thinking… 3 s" line while the bot works, wiped when the reply prints.

Ctrl-C at the prompt is a key here (prompt_toolkit reads in raw mode) and
raises KeyboardInterrupt; during the wait the terminal is back in its normal
mode, so Ctrl-C is SIGINT, which asyncio turns into cancelling the chat.
prompt_toolkit is told not to install its own SIGINT handler, so that path
stays asyncio's.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from middleware.private_file import open_private

PROMPT = "you> "
# Erase the current line: carriage return, then "clear entire line".
_WIPE = "\r\x1b[2K"


def private_history(path: Path | None) -> tuple[History, str | None]:
    """History kept in ``path`` (created or tightened to 0600), or in memory.

    Returns the history and, when the file cannot be used, why (for a warning).
    """
    if path is None:
        return InMemoryHistory(), None
    try:
        os.close(open_private(path, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        return InMemoryHistory(), f"history not kept: cannot use {path}: {exc.strerror}"
    return FileHistory(str(path)), None


def _bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        # Enter sends; Esc Enter (Alt-Enter in most terminals) adds a line to the message.
        event.current_buffer.insert_text("\n")

    return bindings


class TerminalPrompt:
    """Reads messages from a person at a terminal; ``None`` on Ctrl-D."""

    def __init__(self, stdout: TextIO, history: History) -> None:
        self.stdout = stdout
        self.session: PromptSession[str] = PromptSession(
            history=history, key_bindings=_bindings(), enable_history_search=False
        )

    async def open(self) -> None:
        """Nothing to open: prompt_toolkit takes the terminal only while it prompts."""

    async def close(self) -> None:
        """Nothing to close: the terminal mode was put back when the last prompt returned."""

    async def read(self) -> str | None:
        try:
            return await self.session.prompt_async(
                PROMPT,
                prompt_continuation=" " * len(PROMPT),
                handle_sigint=False,
                set_exception_handler=False,
            )
        except EOFError:
            return None

    @asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Show "thinking…" (with the seconds so far) until the block ends, then wipe it."""
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])  # the ticker's own cancellation is not ours to raise
            self.stdout.write(_WIPE)
            self.stdout.flush()

    async def _tick(self) -> None:
        started = time.monotonic()
        while True:
            seconds = int(time.monotonic() - started)
            self.stdout.write(_WIPE + "thinking…" + (f" {seconds} s" if seconds else ""))
            self.stdout.flush()
            # Redrawn once a second, so a 30 s model call visibly counts up.
            await asyncio.sleep(1)
