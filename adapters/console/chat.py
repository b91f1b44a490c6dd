"""The conversation loop behind `guardbot chat`: no token, no network needed.

Each message goes through the full pipeline (guards, log, history); the
console's own commands (``/help``, ``/quit``, ``/exit``, ``/explain on|off``)
are answered here and never reach the model, and ``/admin ...`` goes to the
admin commands. Input comes from a person at a terminal
(:mod:`adapters.console.terminal`) or from a pipe or file, one message per
line (:mod:`adapters.console.lines`); everything else is the same.

Everything the bot says passes :func:`adapters.render.plain` first: a reply
is model output and may carry terminal escapes meant to restyle or take over
the terminal. Ctrl-C while a reply is being made cancels it; the bot records
the message as cut off (an error decision), so the log has every message it
was given.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO

from adapters.base import MessageHandler
from adapters.console.lines import PipedLines, clean_text
from adapters.console.stream import ConsoleReplyView
from adapters.render import explain, plain
from middleware.types import ChatRequest, Decision

EXIT_WORDS = {"/quit", "/exit"}
MARGIN = " " * len("bot> ")

HELP = """\
Console commands (answered here, never sent to the model):
  /help              this list
  /quit, /exit       leave (Ctrl-D too; Ctrl-C leaves at once, and a reply still
                     being made is cancelled and logged as such)
  /admin COMMAND     an admin command; /admin help lists them
  /explain on|off    show each reply's verdicts and timings (now {explain})
Anything else is a message to the bot."""
TERMINAL_HELP = "\nEsc Enter starts a new line; a pasted block is sent as one message."


class LineSource(Protocol):
    """Where messages come from: a terminal prompt or a pipe."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self) -> str | None:
        """The next message as typed, ``None`` at the end of input."""
        ...

    def waiting(self) -> AbstractAsyncContextManager[None]:
        """Wraps the wait for a reply (a terminal shows "thinking…")."""
        ...


class ConsoleChat:
    def __init__(
        self,
        handler: MessageHandler,
        *,
        stdin: BinaryIO,
        stdout: TextIO,
        stderr: TextIO,
        show_explain: bool = False,
        interactive: bool | None = None,
        history_path: Path | None = None,
    ) -> None:
        self.handler = handler
        self.stdout, self.stderr = stdout, stderr
        self.show_explain = show_explain
        # A person is typing only when both ends are a terminal; `chat > file` stays plain.
        if interactive is None:
            interactive = stdin.isatty() and stdout.isatty()
        self.interactive = interactive
        self.source = self._source(stdin, history_path)
        self.thread_id = uuid.uuid4().hex[:12]
        try:
            self.user = getpass.getuser()
        except (OSError, KeyError):
            self.user = "console"

    def _source(self, stdin: BinaryIO, history_path: Path | None) -> LineSource:
        if not self.interactive:
            return PipedLines(stdin)
        # Imported here: a pipe never needs prompt_toolkit, and it takes time to import.
        from adapters.console.terminal import TerminalPrompt, private_history

        history, problem = private_history(history_path)
        if problem:
            self._warn(problem)
        return TerminalPrompt(self.stdout, history)

    def _request(self, text: str, n: int) -> ChatRequest:
        return ChatRequest(
            platform="console",
            channel_id="console",
            thread_id=self.thread_id,
            user_id=self.user,
            user_name=self.user,
            message_id=f"{self.thread_id}-{n}",
            text=text,
        )

    def _say(self, text: str) -> None:
        shown = plain(text, one_line=False)
        if self.interactive:  # later lines under the first, clear of the "bot> " margin
            shown = "bot> " + shown.replace("\n", "\n" + MARGIN)
        print(shown, file=self.stdout, flush=True)

    def _margin(self) -> str:
        return MARGIN if self.interactive else ""

    def _warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.stderr, flush=True)

    async def run(self) -> int:
        """Chat until /quit, /exit or the end of input (0), or Ctrl-C at the prompt (130)."""
        await self.source.open()
        try:
            return await self._converse()
        except KeyboardInterrupt:
            return 130
        finally:
            await self.source.close()

    async def _converse(self) -> int:
        if self.interactive:
            print("Type a message; /help lists the commands.", file=self.stderr, flush=True)
        n = 0
        while (line := await self.source.read()) is not None:
            text, warnings = clean_text(line)
            for warning in warnings:
                self._warn(warning)
            stripped = text.strip()
            word, _, argument = stripped.partition(" ")
            if stripped.lower() in EXIT_WORDS:
                break
            if word.lower() == "/help":
                print(self._help(), file=self.stdout, flush=True)
            elif word.lower() == "/explain":
                self._set_explain(argument.strip().lower())
            elif stripped:
                n += 1
                await self._one(stripped if stripped.startswith("/") else text, n)
        return 0

    def _help(self) -> str:
        text = HELP.format(explain="on" if self.show_explain else "off")
        return text + (TERMINAL_HELP if self.interactive else "")

    def _set_explain(self, argument: str) -> None:
        if argument in ("on", "off"):
            self.show_explain = argument == "on"
        elif argument:
            print("usage: /explain on|off", file=self.stderr, flush=True)
            return
        print(f"explain is {'on' if self.show_explain else 'off'}", file=self.stdout, flush=True)

    async def _one(self, text: str, n: int) -> None:
        try:
            await self._answer(text, n)
        except Exception as exc:  # one bad turn must not end the conversation
            print(f"error: could not answer: {type(exc).__name__}: {exc}", file=self.stderr)

    async def _answer(self, text: str, n: int) -> None:
        request = self._request(text, n)
        if text.split(maxsplit=1)[0] == "/admin":
            answer = await self.handler.admin(request, text[len("/admin") :].strip())
            self._say(answer)
            return
        view = ConsoleReplyView(
            self.stdout, prefix="bot> " if self.interactive else "", margin=self._margin()
        )
        answering = asyncio.ensure_future(self.handler.handle(request, view))
        try:
            async with self.source.waiting():  # "thinking…" until the first text
                has_text = asyncio.ensure_future(view.has_text.wait())
                await asyncio.wait([answering, has_text], return_when=asyncio.FIRST_COMPLETED)
                has_text.cancel()
            view.may_print.set()
            decision = await answering
        except asyncio.CancelledError:
            answering.cancel()
            await asyncio.wait([answering])  # it records the message as cut off
            # Ctrl-C: the handler has put the unanswered message on record as cut off.
            print("(cancelled before the reply was ready)", file=self.stderr, flush=True)
            raise
        view.close()
        if self.show_explain:
            details = explain(decision, every_verdict=True)
            print(plain(details, one_line=False), file=self.stderr, flush=True)
        await self._delivered(decision)

    async def _delivered(self, decision: Decision) -> None:
        # The reply is on screen; a Ctrl-C now must not leave its delivery unrecorded.
        write = asyncio.ensure_future(self.handler.record_delivery(decision, sent=True, error=None))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])
            raise


def run_console(
    handler: MessageHandler,
    *,
    show_explain: bool = False,
    history_path: Path | None = None,
) -> ConsoleChat:
    return ConsoleChat(
        handler,
        stdin=sys.stdin.buffer,
        stdout=sys.stdout,
        stderr=sys.stderr,
        show_explain=show_explain,
        history_path=history_path,
    )
