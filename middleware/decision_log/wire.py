"""Frames between the bot and its writer process: a 4-byte length, then ``marshal`` data.

Why ``marshal``: both ends are the same interpreter (the writer process is
started with ``sys.executable``), it is the fastest serialiser for the plain
tuples, strings and numbers a job holds (about 5 us per decision each way),
and unlike ``pickle`` it cannot run code when it loads. It refuses subclasses
(a ``StrEnum`` member, say), so jobs are built from plain values.

Replies: the writer answers each transaction with one frame
``(batch_failed, results)``, one result per job in the order the jobs were
sent: ``("ok", value)`` or ``("err", kind, message)``, the kind being
:data:`UNAVAILABLE` or :data:`REFUSED`.
"""

from __future__ import annotations

import marshal
import socket
import struct
from collections import deque
from typing import Any

HEADER = struct.Struct("!I")
READ_CHUNK = 1 << 20
OK, ERR = "ok", "err"
UNAVAILABLE = "unavailable"  # storage failed (disk full, read-only): the caller gets LogUnavailable
REFUSED = "refused"  # this one job was bad (a constraint, an invalid value): ValueError


def frame(value: Any) -> bytes:
    body = marshal.dumps(value)
    return HEADER.pack(len(body)) + body


def load(body: bytes) -> Any:
    return marshal.loads(body)


class FrameReader:
    """The writer process's side: blocking reads, and what else is already waiting.

    :meth:`take` blocks for the first job, then adds every job whose frame has
    fully arrived meanwhile (without waiting for more), up to ``limit``: that
    is the group commit.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._jobs: deque[Any] = deque()
        self.closed = False  # the other end closed: take what is left, then stop

    def take(self, limit: int) -> list[Any] | None:
        """Up to ``limit`` jobs, at least one; None once the bot has gone and nothing is left."""
        while not self._jobs:
            if self.closed:
                return None
            self._receive(block=True)
        while len(self._jobs) < limit and not self.closed and self._receive(block=False):
            pass
        count = min(limit, len(self._jobs))
        return [self._jobs.popleft() for _ in range(count)]

    def _receive(self, *, block: bool) -> bool:
        """Read what is there (waiting for it if ``block``); whether anything arrived."""
        try:
            data = self._sock.recv(READ_CHUNK, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""  # reset by a parent that died: the same as a close
        if not data:
            self.closed = True
            return False
        self._buffer += data
        self._split()
        return True

    def _split(self) -> None:
        buffer, start = self._buffer, 0
        while len(buffer) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + size
            if end > len(buffer):
                break
            self._jobs.extend(load(bytes(buffer[start + HEADER.size : end])))
            start = end
        del buffer[:start]
