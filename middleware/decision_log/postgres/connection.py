"""The shared log SQL, run on PostgreSQL: a connection that speaks the SQLite modules' dialect.

The queries, writes, chain walk, settings and stats of the decision log are
written once (:mod:`..queries`, :mod:`..writes`, :mod:`..integrity`,
:mod:`..settings`, :mod:`..stats`) against the small part of aiosqlite they
use: ``execute``, ``executemany``, ``execute_fetchall``, ``in_transaction``
and ``close``. :class:`SqlConnection` offers exactly that over one asyncpg
connection, so PostgreSQL runs the *same* statements and chains the same
hashes, and a change to them (a new chained table, a new check) reaches both
backends at once. What differs between the dialects is translated here, in
one place:

- placeholders: ``?`` and ``:name`` become ``$n``;
- ``BEGIN IMMEDIATE`` (SQLite's "take the write lock now") becomes ``BEGIN``
  plus a transaction-scoped advisory lock: every write transaction of every
  instance is serialised in the database, which is what keeps one hash chain
  whatever the number of writers; the time spent waiting for it is counted;
- ``BEGIN`` (a read snapshot, as ``verify`` takes) is ``REPEATABLE READ``;
- ``WHERE 1`` is ``WHERE TRUE``; the FTS5 ``MATCH`` becomes a ``tsquery``
  (the schema gives ``decisions_fts`` a ``tsvector`` column);
- errors are raised as the DB-API classes of :mod:`sqlite3` the shared code
  catches: a constraint is :class:`sqlite3.IntegrityError`, anything else
  (a lost connection included) :class:`sqlite3.OperationalError`.

The rest of the schema (SQLite's ``sqlite_sequence`` counter, summing truth
values) is provided by the PostgreSQL schema itself (:mod:`.schema`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
import asyncpg

# The key of the advisory lock that serialises every write transaction (any
# 64-bit number no other application on the database uses: "guardbot").
CHAIN_LOCK_KEY = 0x6775617264626F74
LOCK_SQL = f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})"
# Both in one message (the simple query protocol takes several statements): a round trip less.
BEGIN_LOCKED = f"BEGIN; {LOCK_SQL}"

_TOKEN = re.compile(r"'(?:[^']|'')*'|\?|(?<!:):([A-Za-z_]\w*)")
_FTS = re.compile(r"WHERE decisions_fts MATCH \?")
_WHERE_ONE = re.compile(r"\bWHERE 1\b")


@dataclass(frozen=True, slots=True)
class Translated:
    sql: str
    names: tuple[str, ...] | None  # for ``:name`` statements: the parameter order


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> Translated:
    """A statement of the shared SQL in PostgreSQL's dialect (cached: the set is small)."""
    sql = _FTS.sub("WHERE tsv @@ fts5_query(?)", _WHERE_ONE.sub("WHERE TRUE", sql))
    names: list[str] = []
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if token.startswith("'"):
            return token  # a string literal is left as it is
        if token == "?":
            count += 1
            return f"${count}"
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    out = _TOKEN.sub(number, sql)
    if names and count:
        raise ValueError(f"a statement mixes ? and :name placeholders: {sql[:80]}")
    return Translated(out, tuple(names) if names else None)


def _args(t: Translated, params: Sequence[Any] | Mapping[str, Any] | None) -> Sequence[Any]:
    if params is None:
        return ()
    if t.names is not None:
        named = cast(Mapping[str, Any], params)
        return [named[n] for n in t.names]
    return cast(Sequence[Any], params)


def as_sqlite_error(exc: BaseException) -> sqlite3.Error:
    """The DB-API error the shared code catches, with PostgreSQL's own message."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return sqlite3.IntegrityError(str(exc))
    return sqlite3.OperationalError(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))


# What a driver raises when the server is gone or the statement failed there.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(slots=True)
class LockStats:
    """Time spent waiting for the chain lock, and in write transactions, by this instance."""

    waits: int = 0
    wait_s: float = 0.0  # from asking for the lock to holding it
    held_s: float = 0.0  # from holding it to COMMIT (or ROLLBACK) done: what others wait on


class SqlConnection:
    """One asyncpg connection behind the aiosqlite calls the shared SQL modules make."""

    def __init__(self, conn: asyncpg.Connection, lock_stats: LockStats | None = None) -> None:
        self.conn = conn
        self.lock_stats = lock_stats or LockStats()
        self._locked_at: float | None = None  # when this transaction got the chain lock

    @property
    def in_transaction(self) -> bool:
        return (not self.conn.is_closed()) and self.conn.is_in_transaction()

    async def execute(self, sql: str, params: Any = None) -> None:
        try:
            if sql == "BEGIN IMMEDIATE":
                started = time.perf_counter()
                await self.conn.execute(BEGIN_LOCKED)
                self._locked_at = time.perf_counter()
                self.lock_stats.waits += 1
                self.lock_stats.wait_s += self._locked_at - started
                return
            if sql in ("COMMIT", "ROLLBACK") and self._locked_at is not None:
                try:
                    await self.conn.execute(sql)
                finally:
                    self.lock_stats.held_s += time.perf_counter() - self._locked_at
                    self._locked_at = None
                return
            if sql == "BEGIN":
                await self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return
            t = translate(sql)
            await self.conn.execute(t.sql, *_args(t, params))
        except DRIVER_ERRORS as exc:
            raise as_sqlite_error(exc) from exc

    async def executemany(
        self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> None:
        t = translate(sql)
        try:
            await self.conn.executemany(t.sql, [_args(t, r) for r in rows])
        except DRIVER_ERRORS as exc:
            raise as_sqlite_error(exc) from exc

    async def execute_fetchall(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        t = translate(sql)
        try:
            records = await self.conn.fetch(t.sql, *_args(t, params))
        except DRIVER_ERRORS as exc:
            raise as_sqlite_error(exc) from exc
        return [tuple(r) for r in records]

    async def close(self) -> None:
        try:
            await self.conn.close(timeout=5)
        except DRIVER_ERRORS:
            self.conn.terminate()


class PoolReader:
    """The read side: each query on whichever pooled connection is free (reads run at once).

    A pool replaces connections the server dropped, so reads recover by
    themselves when the database returns.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.in_transaction = False

    async def execute_fetchall(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        t = translate(sql)
        try:
            records = await self.pool.fetch(t.sql, *_args(t, params))
        except DRIVER_ERRORS as exc:
            raise as_sqlite_error(exc) from exc
        return [tuple(r) for r in records]

    async def execute(self, sql: str, params: Any = None) -> None:
        raise sqlite3.OperationalError("the read side of the log runs no statements")

    async def close(self) -> None:
        await self.pool.close()


def shared(conn: SqlConnection | PoolReader) -> aiosqlite.Connection:
    """``conn`` as the shared SQL modules type their connection.

    They are annotated with aiosqlite's class and use only the calls both
    classes here implement; this cast is the one place that relies on it.
    """
    return cast(aiosqlite.Connection, conn)
