"""The writer process: the one connection that writes the log, in a process of its own.

Why a process and not a thread: the bot's event loop spends about 0.07 ms of
CPU per decision (masking, hashing, building rows) and SQLite about as much
again. In one process both need the GIL, so they take turns and the log
tops out near 4,000 decisions/s on two cores; apart, they run side by side.

The bot starts this module with ``sys.executable`` and hands it one end of a
socket pair (see :mod:`.writer`). It opens the file (0600, WAL), applies the
migrations, answers ``("ready", None)`` (or ``("err", kind, message)`` and
exits 1), then loops: take every job that has arrived, commit them as one
transaction (:mod:`.writes`), answer with one frame of results. When the bot
closes its end - or dies, even by SIGKILL - the writer finishes what it
received, closes the database (which checkpoints the WAL) and exits. It
ignores SIGINT and SIGTERM and runs in a session of its own, so a Ctrl-C or a
service manager's stop meant for the bot does not cut its last commits short.

WAL checkpoints happen after a commit once the WAL holds the number of pages
the bot passes (``writer.CHECKPOINT_PAGES``: 10,000, about 40 MB, instead of
SQLite's 1,000): a page written many
times is copied into the file once, and only a checkpoint fsyncs
(``synchronous = NORMAL`` commits do not). A checkpoint that is not held up
by a reader lets the next transaction start the WAL from its beginning again,
so the file stays about that size. A batch that fails on one bad job is
retried job by job, so one caller's error never becomes another's; a storage
failure fails the batch and the next batch tries again, so the log recovers
as soon as the disk does.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from middleware.decision_log import wire, writes
from middleware.decision_log.connection import connect_writer
from middleware.decision_log.errors import LogUnavailable
from middleware.decision_log.migrations import migrate

# Binding None makes the sqlite3 module look for an adapter on a type object,
# which formats and discards an AttributeError every time: about 7% of the
# writer's work, as many rows hold NULLs. A registered adapter is found first;
# `{}.get` is a C function that answers None for its argument.
NO_ADAPTATION = cast(Callable[[None], None], {}.get)
sqlite3.register_adapter(type(None), NO_ADAPTATION)

MAX_BATCH = 1000  # bounds one transaction's size and the time readers of the WAL wait on


def run_batch(conn: sqlite3.Connection, path: str, jobs: list[Any]) -> tuple[bool, list[Any]]:
    """(storage failed, one result per job) for a group of jobs without pragmas."""
    try:
        values = writes.commit(conn, jobs)
    except sqlite3.IntegrityError as exc:
        if len(jobs) > 1:
            return False, isolate(conn, path, jobs)
        return False, [(wire.ERR, wire.REFUSED, f"the decision log refused this write: {exc}")]
    except sqlite3.Error as exc:
        error = (wire.ERR, wire.UNAVAILABLE, writes.storage_error(path, exc))
        return True, [error] * len(jobs)
    except Exception as exc:  # a bad job (a bug or an invalid value): isolate it
        if len(jobs) > 1:
            return False, isolate(conn, path, jobs)
        return False, [(wire.ERR, wire.REFUSED, f"{type(exc).__name__}: {exc}")]
    return False, [(wire.OK, value) for value in values]


def isolate(conn: sqlite3.Connection, path: str, jobs: list[Any]) -> list[Any]:
    """Commit one job at a time so that only the bad one fails."""
    return [run_batch(conn, path, [job])[1][0] for job in jobs]


def run_pragma(conn: sqlite3.Connection, path: str, job: Any) -> tuple[bool, list[Any]]:
    try:
        return False, [(wire.OK, writes.pragma(conn, job[1]))]
    except sqlite3.Error as exc:
        return True, [(wire.ERR, wire.UNAVAILABLE, writes.storage_error(path, exc))]
    except Exception as exc:
        return False, [(wire.ERR, wire.REFUSED, f"{type(exc).__name__}: {exc}")]


def groups(jobs: list[Any]) -> list[list[Any]]:
    """Split at pragmas: each pragma runs alone, between two transactions."""
    found: list[list[Any]] = [[]]
    for job in jobs:
        if job[0] == writes.PRAGMA:
            found += [[job], []]
        else:
            found[-1].append(job)
    return [g for g in found if g]


def serve(sock: socket.socket, path: Path, checkpoint_pages: int) -> int:
    try:
        conn = connect_writer(path)
        try:
            migrate(conn)
        except (sqlite3.Error, RuntimeError) as exc:
            conn.close()
            raise LogUnavailable(f"cannot prepare the decision log {path}: {exc}") from None
    except LogUnavailable as exc:
        sock.sendall(wire.frame((wire.ERR, wire.UNAVAILABLE, str(exc))))
        return 1
    conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint_pages)}")
    reader = wire.FrameReader(sock)
    name = str(path)
    try:
        sock.sendall(wire.frame(("ready", None)))
        while (jobs := reader.take(MAX_BATCH)) is not None:
            for group in groups(jobs):
                if group[0][0] == writes.PRAGMA:
                    reply = run_pragma(conn, name, group[0])
                else:
                    reply = run_batch(conn, name, group)
                # If the bot is gone, keep committing what it sent, then stop.
                with contextlib.suppress(OSError):
                    sock.sendall(wire.frame(reply))
    finally:
        conn.close()  # the last connection to close checkpoints the WAL and removes it
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m middleware.decision_log.writer_process SOCKET_FD DB_PATH CHECKPOINT_PAGES``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not args[0].isdigit() or not args[2].isdigit():
        print(__doc__.splitlines()[0], "- started by the bot, not by hand", file=sys.stderr)
        return 2
    # The writer ends when its bot closes the socket or dies, never on its own: a
    # service manager's SIGTERM to every process would otherwise cut the bot's
    # last commits short while it shuts down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(fileno=int(args[0])) as sock:
        return serve(sock, Path(args[1]), int(args[2]))


if __name__ == "__main__":
    sys.exit(main())
