"""Every write to the log, as run by the writer process inside its transactions.

A job is a plain tuple (it crosses a socket as ``marshal`` data):

- ``("d", row, verdicts, candidates, llm_calls, content_sha256)``: a decision
  as :func:`.encode.encode` built it; the writer adds ``seq`` and the chain;
- ``("v", decision_id, created_utc, status, error)``: a delivery event;
- ``("op", name, args)``: one of :data:`OPS` (settings, admin actions, replay
  runs, a prune step), whose return value goes back to the caller;
- ``("pragma", text)``: ``PRAGMA text`` between two transactions (tests use it
  to fill the disk with ``max_page_count``).

:func:`commit` writes a group of jobs as one ``BEGIN IMMEDIATE`` transaction
with one ``executemany`` per table. Only the standard library is imported
here: the writer process starts without pydantic.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from middleware.decision_log.chain import GENESIS, link
from middleware.decision_log.columns import (
    ADMIN_COLUMNS,
    INSERT_ADMIN,
    INSERT_CANDIDATE,
    INSERT_DECISION,
    INSERT_DELIVERY,
    INSERT_FTS,
    INSERT_LLM_CALL,
    INSERT_REPLAY,
    INSERT_VERDICT,
)

Job = tuple[Any, ...]
DECISION, DELIVERY, OP, PRAGMA = "d", "v", "op", "pragma"
PRUNE_CHUNK = 5000

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


def commit(conn: sqlite3.Connection, jobs: Sequence[Job]) -> list[Any]:
    """Write ``jobs`` (no pragmas) as one transaction; their results, in order.

    All or nothing: on any error the transaction is rolled back and the error raised.
    """
    decisions = [j for j in jobs if j[0] == DECISION]
    deliveries = [j[1:] for j in jobs if j[0] == DELIVERY]
    conn.execute("BEGIN IMMEDIATE")
    try:
        if decisions:
            _insert_decisions(conn, decisions)
        if deliveries:
            conn.executemany(INSERT_DELIVERY, deliveries)
        results = [OPS[j[1]](conn, *j[2]) if j[0] == OP else None for j in jobs]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return results


def _insert_decisions(conn: sqlite3.Connection, decisions: list[Job]) -> None:
    prev, seq = conn.execute(HEAD_SQL, (GENESIS,)).fetchone()
    chained, searchable = [], []
    for _, row, _v, _c, _l, content in decisions:
        seq += 1
        sha = link(prev, content)
        chained.append((seq, *row, prev, sha))
        searchable.append((seq, row[-2], row[-1]))  # (text, reply)
        prev = sha
    conn.executemany(INSERT_DECISION, chained)
    conn.executemany(INSERT_FTS, searchable)
    for sql, at in ((INSERT_VERDICT, 2), (INSERT_CANDIDATE, 3), (INSERT_LLM_CALL, 4)):
        children = [child for d in decisions for child in d[at]]
        if children:
            conn.executemany(sql, children)


def pragma(conn: sqlite3.Connection, text: str) -> Any:
    """``PRAGMA text`` outside any transaction; the first value it answers, if any."""
    if ";" in text:
        raise ValueError(f"one pragma at a time, not {text!r}")
    found = conn.execute(f"PRAGMA {text}").fetchone()
    return None if found is None else found[0]


# -- operations (``("op", name, args)``), each inside the group's transaction ----------


def insert_admin(conn: sqlite3.Connection, row: Sequence[Any]) -> None:
    conn.execute(INSERT_ADMIN, tuple(row))


def insert_replay(conn: sqlite3.Connection, row: Sequence[Any]) -> None:
    conn.execute(INSERT_REPLAY, tuple(row))


def change_setting(conn: sqlite3.Connection, audit: Sequence[Any]) -> str | None:
    """Upsert (new value None: delete) a setting and audit it; returns the old value's JSON.

    ``audit`` is the admin action row (:data:`ADMIN_COLUMNS`) with the change
    in it, all but its old value, which only this transaction knows. It is
    written in the same transaction, so the trail can never disagree with
    the settings.
    """
    row = dict(zip(ADMIN_COLUMNS, audit, strict=True))
    scope, key, new_json = row["scope"], row["key"], row["new_json"]
    found = conn.execute(
        "SELECT value_json FROM settings WHERE scope = ? AND key = ?", (scope, key)
    ).fetchone()
    old_json: str | None = found[0] if found else None
    row["old_json"] = old_json
    if new_json is None:
        conn.execute("DELETE FROM settings WHERE scope = ? AND key = ?", (scope, key))
    else:
        conn.execute(
            "INSERT INTO settings (scope, key, value_json, updated_utc, actor) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
            "value_json = excluded.value_json, updated_utc = excluded.updated_utc, "
            "actor = excluded.actor",
            (scope, key, new_json, row["created_utc"], row["actor"]),
        )
    insert_admin(conn, tuple(row.values()))
    return old_json


def prune_step(
    conn: sqlite3.Connection, cutoff_utc: str, now_utc: str
) -> tuple[int, int, str | None, bool]:
    """One chunk of a prune: (removed, through seq, through id, another chunk is due).

    Records a checkpoint with the hash of the last row it removes first, which
    is where verification of the remaining chain starts.
    """
    rows = conn.execute(
        f"SELECT seq, id, sha256 FROM decisions WHERE {PREFIX_SQL} ORDER BY seq LIMIT ?",
        (cutoff_utc, PRUNE_CHUNK),
    ).fetchall()
    if not rows:
        return (0, 0, None, False)
    seq, rid, sha = rows[-1]
    conn.execute(
        "INSERT INTO chain_checkpoints (created_utc, cutoff_utc, through_seq, through_id, "
        "through_sha256, pruned_count) VALUES (?, ?, ?, ?, ?, ?)",
        (now_utc, cutoff_utc, seq, rid, sha, len(rows)),
    )
    conn.execute("DELETE FROM decisions WHERE seq <= ?", (seq,))
    return (len(rows), seq, rid, len(rows) == PRUNE_CHUNK)


OPS: dict[str, Callable[..., Any]] = {
    "admin": insert_admin,
    "replay": insert_replay,
    "setting": change_setting,
    "prune": prune_step,
}


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
