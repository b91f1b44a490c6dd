"""The read-only connection: queries, audits, `guardbot verify`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from middleware.decision_log.connection import BUSY_TIMEOUT_MS, target
from middleware.decision_log.errors import LogUnavailable


async def connect_reader(path: Path) -> aiosqlite.Connection:
    """A read-only connection (``mode=ro``): queries, audits, `guardbot verify`."""
    uri = target(path, read_only=True)
    try:
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise LogUnavailable(f"cannot open the decision log {path}: {exc}") from None
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        await db.close()
        raise LogUnavailable(f"cannot use the decision log {path}: {exc}") from None
    return db
