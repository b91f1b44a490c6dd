"""Opening the database file: owner-only permissions, WAL, pragmas, read-only URIs.

The file is created 0600 before SQLite touches it; SQLite gives the ``-wal``
and ``-shm`` files the same mode. ``synchronous = NORMAL`` in WAL mode keeps
every committed transaction through a process crash (SIGKILL, OOM kill); only
a power loss or OS crash can drop the last commits, never corrupt the file.
Readers (:mod:`.reader`) open ``file:...?mode=ro`` so an audit command cannot change
the log. Only the standard library here: the writer process imports this.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from middleware.decision_log.errors import LogUnavailable

BUSY_TIMEOUT_MS = 5000  # another process (a CLI prune, a second bot) may hold the lock briefly


def create_private(path: Path) -> None:
    """Create the file (and missing parent directories) readable by the owner only."""
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # an older file left group/world readable
    finally:
        os.close(fd)


def target(path: Path, *, read_only: bool) -> str:
    """What to hand SQLite: a read-only URI, or the path of a file made private first."""
    if read_only:
        if not path.is_file():
            raise LogUnavailable(f"no decision log at {path} (run `guardbot chat` to create one)")
        return f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        create_private(path)
    except OSError as exc:
        raise LogUnavailable(f"cannot create the decision log {path}: {exc.strerror}") from None
    return str(path)


def connect_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection (in the writer process), in autocommit mode."""
    where = target(path, read_only=False)
    try:
        db = sqlite3.connect(where, isolation_level=None)
    except sqlite3.Error as exc:
        raise LogUnavailable(f"cannot open the decision log {path}: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise LogUnavailable(f"{path}: cannot switch the decision log to WAL mode")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        db.close()
        raise LogUnavailable(f"cannot use the decision log {path}: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db
