"""Every write to the log, as the writer runs it inside its transactions.

A job is an :class:`~.records.EncodedDecision`, a :class:`Delivery` or an
:class:`Op` (settings, admin actions, replay runs, a prune step: its return
value goes back to the caller). :func:`commit` writes a group of jobs as one
``BEGIN IMMEDIATE`` transaction with one ``executemany`` per table. The
chain's head (:data:`HEAD_SQL`) is read at the start of the transaction and
written back at its end, so every record of every kind takes the next ``seq``.

Every step here takes a :class:`Tx`, the calls that aiosqlite's connection,
the writer's direct sqlite3 calls on its thread (``one_hop._Direct``) and the
PostgreSQL connection (``postgres.connection.SqlConnection``) all answer the
same way; rows come from ``execute_fetchall`` only.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from middleware.decision_log.chain import GENESIS, Chainer
from middleware.decision_log.records import (
    ADMIN_HASHED,
    CANDIDATE_COLUMNS,
    CHECKPOINT_COLUMNS,
    DECISION_COLUMNS,
    DELIVERY_COLUMNS,
    LINK_COLUMNS,
    LLM_CALL_COLUMNS,
    REPLAY_COLUMNS,
    ROWS_COLUMN,
    VERDICT_COLUMNS,
    EncodedDecision,
    Row,
    insert_sql,
    named,
    row_sha256,
    values_of,
)
from middleware.decision_log.trail import Key, SettingState, derive, parse_snapshot, snapshot_json


class Insert(NamedTuple):
    """An ``INSERT`` of rows (dicts by column name) bound in its own column order.

    Binding ``:name`` makes sqlite3 build and look up a key per column per row,
    about a fifth of what an insert costs; ``values`` takes the same columns
    from the dict by name, so a row's encoding does not depend on the order.
    """

    sql: str
    values: Callable[[Mapping[str, Any]], Sequence[Any]]

    @classmethod
    def of(cls, table: str, columns: tuple[str, ...]) -> Insert:
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        return cls(sql, values_of(columns))


PRUNE_CHUNK = 5000
INSERT_DECISION = Insert.of("decisions", (*DECISION_COLUMNS, ROWS_COLUMN, *LINK_COLUMNS))
DECISION_VALUES = values_of((*DECISION_COLUMNS, ROWS_COLUMN))  # INSERT_DECISION's, but the link
INSERT_FTS = "INSERT INTO decisions_fts (rowid, text, reply) VALUES (?, ?, ?)"
INSERT_CHILDREN = (
    Insert.of("verdicts", VERDICT_COLUMNS),
    Insert.of("candidates", CANDIDATE_COLUMNS),
    Insert.of("llm_calls", LLM_CALL_COLUMNS),
)  # in the order of EncodedDecision.parts
INSERT_DELIVERY = insert_sql("deliveries", (*DELIVERY_COLUMNS, *LINK_COLUMNS))
INSERT_ADMIN = insert_sql("admin_actions", (*ADMIN_HASHED, *LINK_COLUMNS))
INSERT_CHECKPOINT = insert_sql("chain_checkpoints", (*CHECKPOINT_COLUMNS, *LINK_COLUMNS))
INSERT_REPLAY = insert_sql("replay_runs", REPLAY_COLUMNS)

# The chain's head: the last seq used and its hash (a removed tail leaves it behind).
HEAD_SQL = "SELECT seq, sha256 FROM chain_head WHERE id = 1"
UPDATE_HEAD_SQL = "UPDATE chain_head SET seq = ?, sha256 = ? WHERE id = 1"
# Every chained table: (its records' kind as SQL, table, their id as text). Deliveries,
# checkpoints and stream events are numbered by the database.
CHAINED_TABLES = (
    ("'decision'", "decisions", "id"),
    ("'delivery'", "deliveries", "CAST(id AS TEXT)"),
    ("'admin action'", "admin_actions", "id"),
    ("'checkpoint'", "chain_checkpoints", "CAST(id AS TEXT)"),
    ("'stream ' || kind", "stream_events", "CAST(id AS TEXT)"),  # stream chunk | stream end
)
CHAINED_RECORDS = " UNION ALL ".join(
    f"SELECT {kind} AS kind, seq, {rid} AS rid, prev_sha256, sha256, created_utc FROM {table}"
    for kind, table, rid in CHAINED_TABLES
)  # every chained record, as (kind, seq, rid, prev_sha256, sha256, created_utc)
SETTING_CHANGE_COLUMNS = ("id", "created_utc", "actor", "scope", "key", "new_json")
SETTING_CHANGES_SQL = (
    f"SELECT {', '.join(SETTING_CHANGE_COLUMNS)} FROM admin_actions "
    "WHERE changes_setting = 1 AND seq > ? AND seq <= ? ORDER BY seq"
)
# A prefix of the chain (by seq), up to the first record not old enough.
FIRST_RECENT_SQL = f"SELECT min(seq) FROM ({CHAINED_RECORDS}) AS r WHERE created_utc >= ?"
PREFIX_SQL = f"seq <= coalesce(({FIRST_RECENT_SQL}) - 1, (SELECT seq FROM chain_head WHERE id = 1))"


class Tx(Protocol):
    """The connection a step runs its statements on, inside the writer's transaction."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Any = ..., /) -> Awaitable[object]: ...

    def executemany(
        self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]], /
    ) -> Awaitable[object]: ...

    def execute_fetchall(self, sql: str, params: Any = ..., /) -> Awaitable[Iterable[Any]]: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    row: Row  # decision_id, created_utc, status, error


@dataclass(frozen=True, slots=True)
class Op:
    """A write whose result the caller needs, run inside the group's transaction;
    it appends what it writes to the chain through the transaction's :class:`Chainer`."""

    run: Callable[[Tx, Chainer], Awaitable[Any]]


Job = EncodedDecision | Delivery | Op


async def commit(db: Tx, jobs: Sequence[Job]) -> list[Any]:
    """Write ``jobs`` as one transaction, chained in order; their results, in order.

    All or nothing: on any error the transaction is rolled back and the error raised.
    """
    decisions = [j for j in jobs if isinstance(j, EncodedDecision)]
    deliveries = [j.row for j in jobs if isinstance(j, Delivery)]
    await db.execute("BEGIN IMMEDIATE")
    try:
        chain = await head(db)
        before = chain.seq
        if decisions:
            await _insert_decisions(db, decisions, chain)
        if deliveries:
            chained = [linked(chain, "delivery", DELIVERY_COLUMNS, row) for row in deliveries]
            await db.executemany(INSERT_DELIVERY, chained)
        results = [await j.run(db, chain) if isinstance(j, Op) else None for j in jobs]
        if chain.seq != before:
            await db.execute(UPDATE_HEAD_SQL, (chain.seq, chain.sha256))
        await db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (disk full), or the connection be gone.
        with contextlib.suppress(sqlite3.Error, ValueError):
            if db.in_transaction:
                await db.execute("ROLLBACK")
        raise
    return results


def linked(chain: Chainer, kind: str, hashed: tuple[str, ...], row: Row) -> Row:
    """``row`` appended to the chain as the next record of ``kind``, with its link columns."""
    seq, prev, sha = chain.append(kind, row_sha256(hashed, row))
    return {**row, "seq": seq, "prev_sha256": prev, "sha256": sha}


async def first(db: Tx, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row a query returns, or None."""
    for row in await db.execute_fetchall(sql, params):
        return row
    return None


async def head(db: Tx) -> Chainer:
    found = await first(db, HEAD_SQL)
    if found is None:
        raise sqlite3.IntegrityError("the chain head row is missing; run `guardbot verify`")
    return Chainer(found[0], found[1])


async def _insert_decisions(db: Tx, decisions: list[EncodedDecision], chain: Chainer) -> None:
    rows, search = [], []
    for d in decisions:
        link = chain.append("decision", d.content_sha256)
        rows.append((*DECISION_VALUES(d.row), *link))
        search.append((link[0], d.row["text"], d.row["reply"]))
    await db.executemany(INSERT_DECISION.sql, rows)
    await db.executemany(INSERT_FTS, search)
    for at, insert in enumerate(INSERT_CHILDREN):
        children = [insert.values(child) for d in decisions for child in d.parts[at]]
        if children:
            await db.executemany(insert.sql, children)


# -- operations, each inside the group's transaction ----------------------------------


def insert_admin(row: Row) -> Op:
    """An admin action that changed no setting (a query, or a refused attempt)."""

    async def run(db: Tx, chain: Chainer) -> None:
        admin = {**row, "changes_setting": 0}
        await db.execute(INSERT_ADMIN, linked(chain, "admin action", ADMIN_HASHED, admin))

    return Op(run)


def insert_replay(row: Row) -> Op:
    async def run(db: Tx, chain: Chainer) -> None:
        await db.execute(INSERT_REPLAY, row)

    return Op(run)


def change_setting(audit: Row) -> Op:
    """Upsert (new value None: delete) a setting and audit it; the op returns the old JSON.

    ``audit`` is the admin action row with the change in it, all but its old
    value, which only this transaction knows. It is written (and chained) in
    the same transaction: the trail is what the setting in force derives from.
    """

    async def run(db: Tx, chain: Chainer) -> str | None:
        scope, key, new_json = audit["scope"], audit["key"], audit["new_json"]
        old_json: str | None = await _one(
            db, "SELECT value_json FROM settings WHERE scope = ? AND key = ?", (scope, key)
        )
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
        admin = {**audit, "old_json": old_json, "changes_setting": 1}
        await db.execute(INSERT_ADMIN, linked(chain, "admin action", ADMIN_HASHED, admin))
        return old_json

    return Op(run)


def prune_step(cutoff_utc: str, now_utc: str) -> Op:
    """One chunk of a prune; the op returns (decisions removed, another chunk is due).

    Removes a prefix of the chain (every kind) and appends a checkpoint record
    holding the hash of the last record removed, which is where verification
    of the rest starts, and the settings in force there, which the trail after
    it is applied to.
    """

    async def run(db: Tx, chain: Chainer) -> tuple[int, bool]:
        start, _, snapshot, _, _ = await checkpoint(db)
        recent = await _one(db, FIRST_RECENT_SQL, (cutoff_utc,))
        limit = min(chain.seq, recent - 1) if recent is not None else chain.seq
        nth = await _one(
            db,
            "SELECT seq FROM decisions WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?",
            (start, PRUNE_CHUNK),
        )
        end = limit if nth is None else min(limit, nth - 1)
        if end <= start:
            return (0, False)
        found = list(
            await db.execute_fetchall(
                f"SELECT kind, rid, sha256 FROM ({CHAINED_RECORDS}) AS r WHERE seq = ?", (end,)
            )
        )
        if len(found) != 1:
            raise ValueError(f"cannot prune: the chain has no single record #{end}")
        _, rid, through_sha = found[0]
        state = await settings_state(db, start, end, snapshot)
        count = await _one(db, "SELECT count(*) FROM decisions WHERE seq <= ?", (end,)) or 0
        row = {
            "created_utc": now_utc, "cutoff_utc": cutoff_utc, "through_seq": end,
            "through_id": str(rid), "through_sha256": through_sha, "pruned_count": count,
            "settings_json": snapshot_json(state),
        }  # fmt: skip
        await db.execute(INSERT_CHECKPOINT, linked(chain, "checkpoint", CHECKPOINT_COLUMNS, row))
        for _, table, _ in CHAINED_TABLES:
            await db.execute(f"DELETE FROM {table} WHERE seq <= ?", (end,))
        return (count, end < limit)

    return Op(run)


async def settings_state(
    db: Tx, after_seq: int, through_seq: int, snapshot: str | None
) -> dict[Key, SettingState]:
    """The settings in force at ``through_seq``: the snapshot, then the trail after it."""
    changes = await db.execute_fetchall(SETTING_CHANGES_SQL, (after_seq, through_seq))
    return derive(parse_snapshot(snapshot), named(SETTING_CHANGE_COLUMNS, changes))


async def checkpoint(db: Tx) -> tuple[int, str, str | None, int | None, str]:
    """The last prune checkpoint: (through_seq, its hash, settings snapshot, own seq, id),
    or (0, GENESIS, None, None, "") for a log never pruned."""
    r = await first(
        db,
        "SELECT through_seq, through_sha256, settings_json, seq, id FROM chain_checkpoints "
        "ORDER BY through_seq DESC, id DESC LIMIT 1",
    )
    return (0, GENESIS, None, None, "") if r is None else (r[0], r[1], r[2], r[3], str(r[4]))


async def _one(db: Tx, sql: str, params: Sequence[Any]) -> Any:
    found = await first(db, sql, params)
    return None if found is None else found[0]


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
