"""Runtime settings, the admin audit trail and replay runs: SQL for the writer and readers.

Settings are the one mutable table (the current override per scope and key);
every change, and every refused attempt, is an append-only ``admin_actions``
row written in the same transaction as the change itself, so the trail can
never disagree with the settings. Write functions here run inside the
writer's transaction and are handed to it as jobs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiosqlite

from middleware.decision_log.decode import parse_utc
from middleware.decision_log.encode import utc_text
from middleware.decision_log.rows import AdminActionRow, ReplayRunRow, SettingRow
from middleware.types import new_id

ADMIN_COLUMNS = (
    "id, created_utc, actor, platform, channel_id, command, scope, key, old_json, new_json, "
    "allowed, error"
)
REPLAY_COLUMNS = (
    "id, created_utc, actor, config_fingerprint, decisions_count, changed_count, duration_ms, "
    "filters_json, summary_json, changes_json"
)

Write = Callable[[sqlite3.Connection], Any]  # run by the writer, inside its transaction


def check_scope(scope: str) -> None:
    parts = scope.split(":")
    if scope != "global" and not (len(parts) == 3 and parts[0] == "channel" and all(parts[1:])):
        raise ValueError(
            f'setting scope must be "global" or "channel:<platform>:<id>", not {scope!r}'
        )


def to_json(value: Any) -> str:
    """JSON for a stored value; refuses NaN and non-JSON types before anything is queued."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value cannot be stored as JSON: {exc}") from None


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def admin_row(
    *,
    now: datetime,
    actor: str,
    platform: str,
    channel_id: str,
    command: str,
    scope: str | None,
    key: str | None,
    old_json: str | None,
    new_json: str | None,
    allowed: bool,
    error: str | None,
) -> tuple[Any, ...]:
    return (
        new_id(), utc_text(now), actor, platform, channel_id, command, scope, key, old_json,
        new_json, int(allowed), error,
    )  # fmt: skip


def insert_admin(row: tuple[Any, ...]) -> Write:
    def write(db: sqlite3.Connection) -> None:
        db.execute(f"INSERT INTO admin_actions ({ADMIN_COLUMNS}) VALUES ({_marks(12)})", row)

    return write


def change_setting(
    scope: str, key: str, new_json: str | None, *, now: datetime, actor: str, audit: dict[str, Any]
) -> Write:
    """Upsert (or delete when ``new_json`` is None) and audit it; returns the old value."""

    def write(db: sqlite3.Connection) -> Any:
        found = db.execute(
            "SELECT value_json FROM settings WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        old_json = found[0] if found else None
        if new_json is None:
            db.execute("DELETE FROM settings WHERE scope = ? AND key = ?", (scope, key))
        else:
            db.execute(
                "INSERT INTO settings (scope, key, value_json, updated_utc, actor) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                "value_json = excluded.value_json, updated_utc = excluded.updated_utc, "
                "actor = excluded.actor",
                (scope, key, new_json, utc_text(now), actor),
            )
        row = admin_row(
            now=now, actor=actor, scope=scope, key=key, old_json=old_json, new_json=new_json,
            allowed=True, error=None, **audit,
        )  # fmt: skip
        insert_admin(row)(db)
        return from_json(old_json)

    return write


def insert_replay(row: tuple[Any, ...]) -> Write:
    def write(db: sqlite3.Connection) -> None:
        db.execute(f"INSERT INTO replay_runs ({REPLAY_COLUMNS}) VALUES ({_marks(10)})", row)

    return write


async def settings(db: aiosqlite.Connection) -> list[SettingRow]:
    rows = await db.execute_fetchall(
        "SELECT scope, key, value_json, updated_utc, actor FROM settings ORDER BY scope, key"
    )
    return [SettingRow(r[0], r[1], json.loads(r[2]), parse_utc(r[3]), r[4]) for r in rows]


async def admin_actions(db: aiosqlite.Connection, limit: int) -> list[AdminActionRow]:
    rows = await db.execute_fetchall(
        f"SELECT {ADMIN_COLUMNS} FROM admin_actions ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [
        AdminActionRow(
            id=r[0],
            created_utc=parse_utc(r[1]),
            actor=r[2],
            platform=r[3],
            channel_id=r[4],
            command=r[5],
            scope=r[6],
            key=r[7],
            old=from_json(r[8]),
            new=from_json(r[9]),
            allowed=bool(r[10]),
            error=r[11],
        )  # fmt: skip
        for r in rows
    ]


async def replay_runs(db: aiosqlite.Connection, limit: int) -> list[ReplayRunRow]:
    rows = await db.execute_fetchall(
        f"SELECT {REPLAY_COLUMNS} FROM replay_runs ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [
        ReplayRunRow(
            id=r[0],
            created_utc=parse_utc(r[1]),
            actor=r[2],
            config_fingerprint=r[3],
            decisions_count=r[4],
            changed_count=r[5],
            duration_ms=r[6],
            filters=json.loads(r[7]),
            summary=json.loads(r[8]),
            changes=json.loads(r[9]),
        )  # fmt: skip
        for r in rows
    ]


def _marks(n: int) -> str:
    return ", ".join("?" * n)
