"""Every write to the log, as the writer runs it inside its transactions.

A job is one of:

- an :class:`~.records.EncodedDecision`: the writer adds ``seq`` and the chain;
- a :class:`Delivery`: a delivery event;
- an :class:`Op`: settings, admin actions, replay runs, a prune step, whose
  return value goes back to the caller;
- a :class:`Pragma`, run by the writer on its own, outside any transaction.

:func:`commit` writes a group of jobs as one ``BEGIN IMMEDIATE`` transaction
with one ``executemany`` per table; rows are dicts bound by column name.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from middleware.decision_log.chain import GENESIS, link
from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    CHAINED_COLUMNS,
    LLM_CALL_COLUMNS,
    VERDICT_COLUMNS,
    EncodedDecision,
    Row,
    insert_sql,
)
from middleware.decision_log.settings import ADMIN_COLUMNS, REPLAY_COLUMNS

PRUNE_CHUNK = 5000
INSERT_DECISION = insert_sql("decisions", CHAINED_COLUMNS)
INSERT_FTS = "INSERT INTO decisions_fts (rowid, text, reply) VALUES (:seq, :text, :reply)"
INSERT_CHILDREN = (
    (insert_sql("verdicts", VERDICT_COLUMNS), 1),
    (insert_sql("candidates", CANDIDATE_COLUMNS), 2),
    (insert_sql("llm_calls", LLM_CALL_COLUMNS), 3),
)  # (statement, index in EncodedDecision)
INSERT_DELIVERY = insert_sql("deliveries", ("decision_id", "created_utc", "status", "error"))
INSERT_ADMIN = insert_sql("admin_actions", ADMIN_COLUMNS)
INSERT_REPLAY = insert_sql("replay_runs", REPLAY_COLUMNS)

# The chain head and the last seq ever used (AUTOINCREMENT's counter, so a
# removed tail leaves a visible gap instead of being silently reused).
HEAD_SQL = """
SELECT
    coalesce(
        (SELECT sha256 FROM decisions ORDER BY seq DESC LIMIT 1),
        (SELECT through_sha256 FROM chain_checkpoints ORDER BY id DESC LIMIT 1),
        ?),
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0)
"""
# A prefix of the chain (by seq), up to the first row not old enough.
PREFIX_SQL = (
    "seq <= coalesce((SELECT min(seq) - 1 FROM decisions WHERE created_utc >= ?), "
    "(SELECT max(seq) FROM decisions))"
)


@dataclass(frozen=True, slots=True)
class Delivery:
    row: Row  # decision_id, created_utc, status, error


@dataclass(frozen=True, slots=True)
class Op:
    """A write whose result the caller needs, run inside the group's transaction."""

    run: Callable[[aiosqlite.Connection], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Pragma:
    """``PRAGMA text`` on the writer's connection, alone, between two transactions
    (tests fill the disk with ``max_page_count``)."""

    text: str


Job = EncodedDecision | Delivery | Op | Pragma


async def commit(db: aiosqlite.Connection, jobs: Sequence[Job]) -> list[Any]:
    """Write ``jobs`` as one transaction; their results, in order.

    All or nothing: on any error the transaction is rolled back and the error raised.
    """
    decisions = [j for j in jobs if isinstance(j, EncodedDecision)]
    deliveries = [j.row for j in jobs if isinstance(j, Delivery)]
    await db.execute("BEGIN IMMEDIATE")
    try:
        if decisions:
            await _insert_decisions(db, decisions)
        if deliveries:
            await db.executemany(INSERT_DELIVERY, deliveries)
        results = [await j.run(db) if isinstance(j, Op) else None for j in jobs]
        await db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (disk full), or the connection be gone.
        with contextlib.suppress(sqlite3.Error, ValueError):
            if db.in_transaction:
                await db.execute("ROLLBACK")
        raise
    return results


async def _insert_decisions(db: aiosqlite.Connection, decisions: list[EncodedDecision]) -> None:
    ((prev, seq),) = await db.execute_fetchall(HEAD_SQL, (GENESIS,))
    chained = []
    for d in decisions:
        seq += 1
        sha = link(prev, d.content_sha256)
        chained.append({**d.row, "seq": seq, "prev_sha256": prev, "sha256": sha})
        prev = sha
    await db.executemany(INSERT_DECISION, chained)
    await db.executemany(INSERT_FTS, chained)
    for sql, at in INSERT_CHILDREN:
        children = [child for d in decisions for child in d[at]]
        if children:
            await db.executemany(sql, children)


async def pragma(db: aiosqlite.Connection, text: str) -> Any:
    """``PRAGMA text`` outside any transaction; the first value it answers, if any."""
    if ";" in text:
        raise ValueError(f"one pragma at a time, not {text!r}")
    found = list(await db.execute_fetchall(f"PRAGMA {text}"))
    return found[0][0] if found else None


# -- operations, each inside the group's transaction ----------------------------------


def insert_admin(row: Row) -> Op:
    async def run(db: aiosqlite.Connection) -> None:
        await db.execute(INSERT_ADMIN, row)

    return Op(run)


def insert_replay(row: Row) -> Op:
    async def run(db: aiosqlite.Connection) -> None:
        await db.execute(INSERT_REPLAY, row)

    return Op(run)


def change_setting(audit: Row) -> Op:
    """Upsert (new value None: delete) a setting and audit it; the op returns the old JSON.

    ``audit`` is the admin action row with the change in it, all but its old
    value, which only this transaction knows. It is written in the same
    transaction, so the trail can never disagree with the settings.
    """

    async def run(db: aiosqlite.Connection) -> str | None:
        scope, key, new_json = audit["scope"], audit["key"], audit["new_json"]
        found = list(
            await db.execute_fetchall(
                "SELECT value_json FROM settings WHERE scope = ? AND key = ?", (scope, key)
            )
        )
        old_json: str | None = found[0][0] if found else None
        if new_json is None:
            await db.execute("DELETE FROM settings WHERE scope = ? AND key = ?", (scope, key))
        else:
            await db.execute(
                "INSERT INTO settings (scope, key, value_json, updated_utc, actor) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                "value_json = excluded.value_json, updated_utc = excluded.updated_utc, "
                "actor = excluded.actor",
                (scope, key, new_json, audit["created_utc"], audit["actor"]),
            )
        await db.execute(INSERT_ADMIN, {**audit, "old_json": old_json})
        return old_json

    return Op(run)


def prune_step(cutoff_utc: str, now_utc: str) -> Op:
    """One chunk of a prune; the op returns (removed, another chunk is due).

    Records a checkpoint with the hash of the last row it removes first, which
    is where verification of the remaining chain starts.
    """

    async def run(db: aiosqlite.Connection) -> tuple[int, bool]:
        rows = list(
            await db.execute_fetchall(
                f"SELECT seq, id, sha256 FROM decisions WHERE {PREFIX_SQL} ORDER BY seq LIMIT ?",
                (cutoff_utc, PRUNE_CHUNK),
            )
        )
        if not rows:
            return (0, False)
        seq, rid, sha = rows[-1]
        await db.execute(
            "INSERT INTO chain_checkpoints (created_utc, cutoff_utc, through_seq, through_id, "
            "through_sha256, pruned_count) VALUES (?, ?, ?, ?, ?, ?)",
            (now_utc, cutoff_utc, seq, rid, sha, len(rows)),
        )
        await db.execute("DELETE FROM decisions WHERE seq <= ?", (seq,))
        return (len(rows), len(rows) == PRUNE_CHUNK)

    return Op(run)


def storage_error(path: str, exc: BaseException) -> str:
    """An operator's explanation of a failed write (disk full, read-only, locked)."""
    text = str(exc)
    low = text.lower()
    if "full" in low:
        why = "the disk or the log's size limit is full"
    elif "readonly" in low or "read-only" in low:
        why = "the database file or its directory is read-only"
    elif "locked" in low or "busy" in low:
        why = "another process has held the write lock too long"
    else:
        why = "a storage error"
    return f"cannot write the decision log {path}: {text} ({why})"
