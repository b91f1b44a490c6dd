"""Messages from a pipe or a file: one line, one message, read without a thread.

`printf 'hi\\n' | guardbot chat` and `guardbot chat < messages.txt` feed the
bot line by line. Reading goes through the event loop (a pipe or a terminal)
or straight from the file (a regular file, or an in-memory stream in tests,
which can never block), so no thread is ever left blocked in a read of
stdin: such a daemon thread holding stdin's buffer lock is what made the
interpreter abort at exit ("Fatal Python error: _enter_buffered_busy").

Bytes are decoded here, so invalid UTF-8 or NUL bytes become a clear warning,
never a traceback; :func:`clean_text` applies the same rules to terminal input.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import BinaryIO

_CHUNK = 64 * 1024
REPLACED = "input was not valid UTF-8; undecodable bytes were replaced with \ufffd"
NUL_REMOVED = "NUL bytes were removed from the input"


def clean_text(text: str) -> tuple[str, list[str]]:
    """Text as read -> text the bot can store, plus warnings about what had to be fixed.

    Undecodable bytes arrive as lone surrogates (``surrogateescape``, as both the
    pipe reader and prompt_toolkit decode them); they become U+FFFD.
    """
    warnings = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        warnings.append(REPLACED)
    if "\x00" in text:
        text = text.replace("\x00", "")
        warnings.append(NUL_REMOVED)
    return text, warnings


def decode_line(raw: bytes) -> tuple[str, list[str]]:
    """Bytes of one input line -> text, plus warnings about what had to be fixed."""
    return clean_text(raw.decode("utf-8", "surrogateescape").rstrip("\r\n"))


def _pollable(stream: BinaryIO) -> int | None:
    """The descriptor to read through the event loop, or None when a plain read cannot block."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None  # an in-memory stream
    mode = os.fstat(fd).st_mode
    return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) else None


class PipedLines:
    """Lines of a byte stream as text, ``None`` at the end; lines may be any length."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._fd: int | None = None
        self._was_blocking = True
        self._pending = bytearray()
        self._ended = False

    async def open(self) -> None:
        fd = _pollable(self.stream)
        if fd is None:
            return
        # A duplicate, because the transport closes what it reads; the original stdin
        # stays open for the interpreter. O_NONBLOCK is shared with the shell (it is a
        # property of the open file), so close() puts the old mode back.
        self._fd = fd
        self._was_blocking = os.get_blocking(fd)
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
        protocol = asyncio.StreamReaderProtocol(self._reader, loop=loop)
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        try:
            self._transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        except BaseException:
            pipe.close()
            raise

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._fd is not None:
            os.set_blocking(self._fd, self._was_blocking)
            self._fd = None

    def waiting(self) -> AbstractAsyncContextManager[None]:
        """No "thinking…" line: the output may be a file or another program."""
        return nullcontext()

    async def read(self) -> str | None:
        raw = await self._next_line()
        return None if raw is None else raw.decode("utf-8", "surrogateescape").rstrip("\r\n")

    async def _next_line(self) -> bytes | None:
        start = 0
        while (end := self._pending.find(b"\n", start)) < 0:
            if self._ended:
                if not self._pending:
                    return None
                end = len(self._pending) - 1  # a last line without a newline
                break
            start = len(self._pending)  # search only the new bytes next time
            chunk = await self._chunk()
            if not chunk:
                self._ended = True
            self._pending += chunk
        line = bytes(self._pending[: end + 1])
        del self._pending[: end + 1]
        return line

    async def _chunk(self) -> bytes:
        if self._reader is not None:
            return await self._reader.read(_CHUNK)
        return self.stream.read(_CHUNK) or b""
