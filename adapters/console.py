"""The terminal adapter behind `guardbot chat`: no token, no network needed.

Each line is one message through the full pipeline (guards, log, history);
``/admin ...`` lines go to the admin commands. It reads bytes, so invalid
UTF-8 or NUL bytes on stdin become a clear warning, never a traceback, and
it works the same from a pipe (`printf 'hi\\n' | guardbot chat`) as typed.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
import uuid
from typing import BinaryIO, TextIO

from adapters.base import MessageHandler
from adapters.render import explain
from middleware.types import ChatRequest

EXIT_WORDS = {"/quit", "/exit"}


def _reader(
    stream: BinaryIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]
) -> None:
    """Blocking reads in a daemon thread, so Ctrl-C never waits for an Enter key."""
    try:
        for line in stream:
            loop.call_soon_threadsafe(queue.put_nowait, line)
    except (OSError, ValueError):
        pass
    finally:
        loop.call_soon_threadsafe(queue.put_nowait, None)


def decode_line(raw: bytes) -> tuple[str, list[str]]:
    """Bytes of one input line -> text, plus warnings about what had to be fixed."""
    warnings = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        warnings.append("input was not valid UTF-8; undecodable bytes were replaced with �")
    if "\x00" in text:
        text = text.replace("\x00", "")
        warnings.append("NUL bytes were removed from the input")
    return text.rstrip("\r\n"), warnings


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
    ) -> None:
        self.handler = handler
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.show_explain = show_explain
        self.interactive = stdin.isatty() if interactive is None else interactive
        self.thread_id = uuid.uuid4().hex[:12]
        try:
            self.user = getpass.getuser()
        except (OSError, KeyError):
            self.user = "console"

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
        prefix = "bot> " if self.interactive else ""
        print(f"{prefix}{text}", file=self.stdout, flush=True)

    def _prompt(self) -> None:
        if self.interactive:
            print("you> ", end="", file=self.stdout, flush=True)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        threading.Thread(target=_reader, args=(self.stdin, loop, queue), daemon=True).start()
        n = 0
        self._prompt()
        while (raw := await queue.get()) is not None:
            text, warnings = decode_line(raw)
            for warning in warnings:
                print(f"warning: {warning}", file=self.stderr, flush=True)
            stripped = text.strip()
            if stripped.lower() in EXIT_WORDS:
                break
            if stripped:
                n += 1
                await self._one(stripped if stripped.startswith("/") else text, n)
            self._prompt()
        return 0

    async def _one(self, text: str, n: int) -> None:
        try:
            await self._answer(text, n)
        except Exception as exc:  # one bad turn must not end the conversation
            print(f"error: could not answer: {type(exc).__name__}: {exc}", file=self.stderr)

    async def _answer(self, text: str, n: int) -> None:
        request = self._request(text, n)
        if text.startswith("/admin"):
            answer = await self.handler.admin(request, text[len("/admin") :].strip())
            self._say(answer)
            return
        decision = await self.handler.handle(request)
        self._say(decision.reply)
        if self.show_explain:
            print(explain(decision, every_verdict=True), file=self.stderr, flush=True)
        await self.handler.record_delivery(decision, sent=True, error=None)


def run_console(handler: MessageHandler, *, show_explain: bool = False) -> ConsoleChat:
    return ConsoleChat(
        handler,
        stdin=sys.stdin.buffer,
        stdout=sys.stdout,
        stderr=sys.stderr,
        show_explain=show_explain,
    )
