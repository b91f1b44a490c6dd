"""The one writer, seen from the bot: jobs go to the writer process, results come back.

Every write to the log goes through :class:`Writer`. ``submit`` adds the job
to the frame being gathered; every job submitted in the same turn of the
event loop leaves in one frame, and the writer process commits everything
that has arrived while its previous transaction ran as one transaction (group
commit, see :mod:`.writer_process`). Alone, a decision is committed at once
(no timer). A reader task resolves each caller's future, in order, from the
process's answers; a caller is told its decision is committed only after the
COMMIT.

If the process dies, every job in flight fails with :class:`LogUnavailable`
(none of them was acknowledged, so no reply was posted for any) and the next
``submit`` starts a new process. Cancelling a caller never disturbs the
writer: its job is committed or fails on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import middleware
from middleware.decision_log import wire, writes
from middleware.decision_log.errors import LogUnavailable

START_TIMEOUT_S = 120.0  # opening runs the migrations, which may take a while on a big file
EXIT_TIMEOUT_S = 30.0
EXIT_GRACE_S = 2.0  # between the writer's socket closing and its exit status being known
# A frame leaves once this many jobs wait, so the writer commits them while
# the bot encodes the next ones (both processes busy, not taking turns).
FRAME_JOBS = 32
CHECKPOINT_PAGES = 10_000  # WAL pages (4 KiB) that make the writer checkpoint after a commit
# The directory that holds the `middleware` package, for the child's import path
# (guardbot may run from a source checkout that is not installed).
PACKAGE_ROOT = str(Path(middleware.__file__).resolve().parents[1])


@dataclass(slots=True)
class WriterStats:
    batches: int = 0  # transactions the writer process committed (or tried to)
    jobs: int = 0
    decisions: int = 0
    max_batch: int = 0
    failed_batches: int = 0
    processes: int = 0  # writer processes started (more than one: one died and was replaced)


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = WriterStats()
        self._proc: subprocess.Popen[Any] | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._gathering: list[tuple[Any, asyncio.Future[Any]]] = []  # not sent yet
        self._in_flight: deque[tuple[str, asyncio.Future[Any]]] = deque()  # sent, unanswered
        self._starting = asyncio.Lock()
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def open(self) -> None:
        """Start the writer process; raises LogUnavailable if it cannot open the log."""
        await self._start()

    async def submit(self, job: tuple[Any, ...]) -> Any:
        """Send one job (see :mod:`.writes`); its result once committed."""
        if self._closing:
            raise LogUnavailable(f"the decision log {self.path} is closed")
        if self._stream is None:
            await self._restart()
        future = asyncio.get_running_loop().create_future()
        if not self._gathering:
            asyncio.get_running_loop().call_soon(self._send)
        self._gathering.append((job, future))
        if len(self._gathering) >= FRAME_JOBS:
            self._send()
        return await future

    async def pragma(self, text: str) -> Any:
        """``PRAGMA text`` on the writer's connection, between two transactions."""
        return await self.submit((writes.PRAGMA, text))

    async def close(self) -> None:
        """Let what was submitted finish, then stop the process (it checkpoints the WAL)."""
        if self._closing:
            return
        self._closing = True
        waiting = [f for _, f in self._gathering] + [f for _, f in self._in_flight]
        if waiting:
            await asyncio.wait(waiting)
        await self._stop()

    # -- the process ------------------------------------------------------------------

    async def _restart(self) -> None:
        async with self._starting:
            if self._stream is None and not self._closing:
                await self._stop()  # collect the old one
                await self._start()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        spawn = functools.partial(
            subprocess.Popen,
            # -S: no site-packages; the writer needs the standard library and
            # this package only, and starts ~40 ms sooner without them.
            [sys.executable, "-S", "-m", "middleware.decision_log.writer_process",
             str(theirs.fileno()), str(self.path), str(CHECKPOINT_PAGES)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the bot, which flushes
            env={**os.environ, "PYTHONPATH": _import_path()},
        )  # fmt: skip
        try:
            self._proc = await asyncio.get_running_loop().run_in_executor(None, spawn)
        except OSError as exc:
            ours.close()
            raise LogUnavailable(f"cannot start the decision log writer: {exc}") from None
        finally:
            theirs.close()
        self.stats.processes += 1
        reader, stream = await asyncio.open_connection(sock=ours)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                hello = await _read(reader)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            hello = None
        if hello is None or hello[0] != "ready":
            stream.close()
            await self._reap()
            if hello is None:
                raise LogUnavailable(
                    f"the decision log writer for {self.path} exited before it was ready "
                    f"({self._exit_text()}); its error is above"
                )
            raise LogUnavailable(hello[2])
        self._stream = stream
        self._reader_task = asyncio.create_task(self._read_results(reader), name="log-writer")

    async def _stop(self) -> None:
        if self._stream is not None:
            self._stream.close()  # end of input: the process commits the rest and exits
            self._stream = None
        if self._reader_task is not None:
            await self._reader_task
            self._reader_task = None
        await self._reap()

    async def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), EXIT_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)

    async def _exited(self, timeout_s: float) -> None:
        """Wait (a little) until the process has exited, so its exit status can be told."""
        proc = self._proc
        if proc is None:
            return
        wait = functools.partial(proc.wait, timeout_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.get_running_loop().run_in_executor(None, wait)

    def _exit_text(self) -> str:
        code = self._proc.poll() if self._proc else None
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    # -- jobs and results -------------------------------------------------------------

    def _send(self) -> None:
        jobs, self._gathering = self._gathering, []
        if not jobs:
            return
        if self._stream is None:  # died since these were submitted
            self._fail([f for _, f in jobs], self._gone())
            return
        try:
            data = wire.frame([job for job, _ in jobs])
        except ValueError:  # a value marshal refuses (a str subclass, say): send plain copies
            data = wire.frame([_plain(job) for job, _ in jobs])
        self._in_flight.extend((job[0], future) for job, future in jobs)
        self._stream.write(data)

    async def _read_results(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                failed, results = await _read(reader)
                self._count(failed, len(results))
                for result in results:
                    kind, future = self._in_flight.popleft()
                    self.stats.decisions += kind == writes.DECISION
                    if not future.done():  # the caller may have been cancelled meanwhile
                        _settle(future, result)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self._exited(EXIT_GRACE_S)  # it closed its end because it is ending
        finally:
            self._stream = None
            error = self._gone()
            self._fail([f for _, f in self._in_flight], error)
            self._in_flight.clear()

    def _count(self, failed: bool, size: int) -> None:
        self.stats.batches += 1
        self.stats.jobs += size
        self.stats.max_batch = max(self.stats.max_batch, size)
        self.stats.failed_batches += bool(failed)

    def _gone(self) -> LogUnavailable:
        if self._closing:
            return LogUnavailable(f"the decision log {self.path} is closed")
        return LogUnavailable(
            f"the decision log writer for {self.path} stopped ({self._exit_text()}); "
            "the next write starts a new one"
        )

    @staticmethod
    def _fail(futures: list[asyncio.Future[Any]], error: BaseException) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(error)


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = wire.HEADER.unpack(await reader.readexactly(wire.HEADER.size))
    return wire.load(await reader.readexactly(size))


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if result[0] == wire.OK:
        future.set_result(result[1])
    elif result[1] == wire.UNAVAILABLE:
        future.set_exception(LogUnavailable(result[2]))
    else:
        future.set_exception(ValueError(result[2]))


def _plain(value: Any) -> Any:
    """``value`` with every str, int and float subclass (enum members) made plain."""
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # not str(): a subclass may override __str__
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return value


def _import_path() -> str:
    inherited = os.environ.get("PYTHONPATH")
    return PACKAGE_ROOT if not inherited else os.pathsep.join((PACKAGE_ROOT, inherited))
