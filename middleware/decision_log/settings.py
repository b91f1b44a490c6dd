"""Runtime settings, the admin audit trail and replay runs: values in, rows out.

Settings are the one mutable table (the current override per scope and key);
every change, and every refused attempt, is an append-only, chained
``admin_actions`` row, and the settings in force are what that trail derives
(:mod:`.trail`), not whatever the table holds. The writes themselves run in
the writer's transactions (:mod:`.writes`); this module checks and encodes
their rows and reads them back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiosqlite

from middleware.decision_log.integrity import derived_settings
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.queries import parse_utc
from middleware.decision_log.records import ADMIN_COLUMNS, REPLAY_COLUMNS, named, utc_text
from middleware.decision_log.rows import AdminActionRow, ReplayRunRow, SettingRow
from middleware.types import new_id, utc_now

log = logging.getLogger("guardbot.decision_log")


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
    policy: TextPolicy,
    *,
    actor: str,
    platform: str,
    channel_id: str,
    command: str,
    scope: str | None,
    key: str | None,
    old: Any,
    new: Any,
    allowed: bool,
    error: str | None,
) -> dict[str, Any]:
    """An admin action's row, all but ``changes_setting``; its command and error masked
    (an admin may paste a key into a command)."""
    return {
        "id": new_id(), "created_utc": utc_text(utc_now()), "actor": actor, "platform": platform,
        "channel_id": channel_id, "command": policy.mask(command), "scope": scope, "key": key,
        "old_json": None if old is None else to_json(old),
        "new_json": None if new is None else to_json(new),
        "allowed": int(allowed), "error": policy.mask_opt(error),
    }  # fmt: skip


async def settings(db: aiosqlite.Connection) -> list[SettingRow]:
    """The settings in force: what the chained admin trail derives, never a row it does not
    explain (a row forged into the file is ignored, with a warning; `verify` names it)."""
    state, problems = await derived_settings(db)
    for problem in problems:
        if problem.message not in _warned:
            _warned.add(problem.message)
            log.warning(
                "%s; the admin trail's value applies (run `guardbot verify`)", problem.message
            )
    return [
        SettingRow(s.scope, s.key, json.loads(s.value_json), parse_utc(s.updated_utc), s.actor)
        for _, s in sorted(state.items())
    ]


_warned: set[str] = set()  # each disagreement is worth one warning per process


async def admin_actions(db: aiosqlite.Connection, limit: int) -> list[AdminActionRow]:
    return [_admin_action(a) for a in await _newest(db, "admin_actions", ADMIN_COLUMNS, limit)]


async def replay_runs(db: aiosqlite.Connection, limit: int) -> list[ReplayRunRow]:
    return [_replay_run(r) for r in await _newest(db, "replay_runs", REPLAY_COLUMNS, limit)]


async def _newest(
    db: aiosqlite.Connection, table: str, columns: tuple[str, ...], limit: int
) -> list[dict[str, Any]]:
    """The newest rows of ``table`` (ids sort by time), by column name."""
    sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY id DESC LIMIT ?"
    return named(columns, await db.execute_fetchall(sql, (limit,)))


# The stored columns are the rows' fields, but for the time and the JSON-encoded values.


def _admin_action(a: dict[str, Any]) -> AdminActionRow:
    old, new = from_json(a.pop("old_json")), from_json(a.pop("new_json"))
    a.update(created_utc=parse_utc(a["created_utc"]), allowed=bool(a["allowed"]))
    return AdminActionRow(**a, old=old, new=new)


def _replay_run(r: dict[str, Any]) -> ReplayRunRow:
    decoded = {k: json.loads(r.pop(f"{k}_json")) for k in ("filters", "summary", "changes")}
    r["created_utc"] = parse_utc(r["created_utc"])
    return ReplayRunRow(**r, **decoded)
