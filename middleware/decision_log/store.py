"""`DecisionLog`: the SQLite backend of :class:`~.storage.DecisionStore`.

One database file, two aiosqlite connections in this process: the single
:class:`~.writer.Writer`'s, with group commits, and a read-only one for
queries, so reads never see a half-written batch and never wait for a
commit. ``record`` returns only once the decision is committed; the bot
posts a reply only after that.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from middleware.decision_log import claims, integrity, queries, streams, structure, writes
from middleware.decision_log import settings as settings_sql
from middleware.decision_log import stats as stats_sql
from middleware.decision_log.chain import ChainReport
from middleware.decision_log.migrations import APPLIED_SQL, MIGRATIONS, pending
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.queries import Filters
from middleware.decision_log.records import delivery_row, encode, utc_text
from middleware.decision_log.rows import AdminActionRow, ReplayRunRow, SettingRow, StoredDecision
from middleware.decision_log.storage import DecisionStore, LogUnavailable
from middleware.decision_log.writer import Writer, WriterStats, connect, connect_on_loop
from middleware.types import Decision, StreamChunk, StreamRecord, Turn, new_id, utc_now

Method = TypeVar("Method", bound=Callable[..., Coroutine[Any, Any, Any]])


def damage_checked(method: Method) -> Method:
    """A read that meets a damaged file (an overwritten page, not a database at all)
    raises LogUnavailable with one line saying so, not a sqlite3 traceback."""

    @functools.wraps(method)
    async def run(self: DecisionLog, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise LogUnavailable(damaged(self.path, exc)) from None

    return cast(Method, run)


def damaged(path: Path, exc: BaseException) -> str:
    return (
        f"cannot read the decision log {path}: {exc} (the file is damaged; restore a backup, "
        f"or salvage what is readable with `sqlite3 {path} .recover`)"
    )


class DecisionLog(DecisionStore):
    """The SQLite decision log; the methods' promises are :class:`DecisionStore`'s."""

    def __init__(
        self,
        path: Path,
        reader: aiosqlite.Connection,
        writer: Writer | None,
        policy: TextPolicy,
    ) -> None:
        self.path = path
        self.policy = policy
        self._reader = reader
        self._writer = writer
        self._on_loop: sqlite3.Connection | None = None  # see history

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        store_text: bool = True,
        redact_pii: bool = False,
        read_only: bool = False,
    ) -> DecisionLog:
        """Open (creating, 0600, and migrating) the log; read-only opens never write."""
        path = Path(path)
        writer = None
        if not read_only:
            writer = Writer(path)
            await writer.open()  # creates (0600) and migrates the file; LogUnavailable if not
        try:
            reader = await connect(path, read_only=True)
        except BaseException:
            if writer is not None:
                await writer.close()
            raise
        log = cls(path, reader, writer, TextPolicy(store_text=store_text, redact_pii=redact_pii))
        log._on_loop = connect_on_loop(path)
        if read_only:
            await log._check_schema()
        return log

    async def _check_schema(self) -> None:
        """A read-only open cannot migrate: refuse a file that is not at the current schema."""
        try:
            try:
                done = [r[0] for r in await self._reader.execute_fetchall(APPLIED_SQL)]
            except sqlite3.OperationalError:
                done = []  # no _migrations table
            todo = pending(MIGRATIONS, done)
        except (sqlite3.Error, RuntimeError) as exc:  # not a database; a newer guardbot's
            problem = f"cannot read the decision log {self.path}: {exc}"
        else:
            if not todo:
                return
            problem = (
                f"{self.path} is not a guardbot decision log at the current schema "
                f"({len(todo)} migration(s) missing); open it once with `guardbot chat` to migrate"
            )
        await self.close()
        raise LogUnavailable(problem)

    async def close(self) -> None:
        """Flush queued writes, then close both connections."""
        # The reader goes first: the last connection to close checkpoints the WAL
        # into the database file, and a read-only one cannot.
        try:
            if self._on_loop is not None:
                self._on_loop.close()
                self._on_loop = None
            await self._reader.close()
        finally:
            if self._writer is not None:
                await self._writer.close()

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats if self._writer else WriterStats()

    # -- writes (all through the one writer task) -------------------------------------

    def _require_writer(self) -> Writer:
        if self._writer is None:
            raise LogUnavailable(f"the decision log {self.path} was opened read-only")
        return self._writer

    async def record(self, decision: Decision) -> None:
        await self._require_writer().submit(encode(decision, self.policy))

    async def record_delivery(self, decision_id: str, status: str, error: str | None) -> None:
        row = delivery_row(decision_id, status, error, self.policy)
        await self._require_writer().submit(writes.Delivery(row))

    async def record_stream_chunk(self, decision_id: str, chunk: StreamChunk, text: str) -> None:
        row = streams.event_row(decision_id, chunk, text, self.policy)
        await self._require_writer().submit(streams.append(row))

    async def record_stream_end(self, decision_id: str, record: StreamRecord) -> None:
        row = streams.event_row(decision_id, record, "", self.policy)
        await self._require_writer().submit(streams.append(row))

    async def claim_event(self, platform: str, event_id: str) -> bool:
        job = claims.claim(platform, event_id, utc_now())
        return bool(await self._require_writer().submit(job))

    async def set_setting(
        self,
        scope: str,
        key: str,
        value: Any | None,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
    ) -> Any | None:
        settings_sql.check_scope(scope)
        if not key:
            raise ValueError("setting key is empty")
        audit = settings_sql.admin_row(
            self.policy, actor=actor, platform=platform, channel_id=channel_id, command=command,
            scope=scope, key=key, old=None, new=value, allowed=True, error=None,
        )  # fmt: skip
        old_json = await self._require_writer().submit(writes.change_setting(audit))
        return settings_sql.from_json(old_json)

    async def record_admin_action(
        self,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
        key: str | None = None,
        scope: str | None = None,
        old: Any = None,
        new: Any = None,
        allowed: bool,
        error: str | None = None,
    ) -> None:
        row = settings_sql.admin_row(
            self.policy, actor=actor, platform=platform, channel_id=channel_id, command=command,
            scope=scope, key=key, old=old, new=new, allowed=allowed, error=error,
        )  # fmt: skip
        await self._require_writer().submit(writes.insert_admin(row))

    async def record_replay_run(
        self,
        *,
        actor: str,
        config_fingerprint: str,
        decisions_count: int,
        changed_count: int,
        duration_ms: float = 0.0,
        filters: dict[str, Any] | None = None,
        summary: Any = None,
        changes: list[Any] | None = None,
    ) -> str:
        to_json = settings_sql.to_json
        row = {
            "id": new_id(), "created_utc": utc_text(utc_now()), "actor": actor,
            "config_fingerprint": config_fingerprint, "decisions_count": int(decisions_count),
            "changed_count": int(changed_count), "duration_ms": float(duration_ms),
            "filters_json": to_json(filters or {}), "summary_json": to_json(summary),
            "changes_json": to_json(changes or []),
        }  # fmt: skip
        await self._require_writer().submit(writes.insert_replay(row))
        return str(row["id"])

    async def prune(self, cutoff: datetime) -> tuple[int, ChainReport]:
        """Remove decisions created before ``cutoff``; refuses if the chain is already broken."""
        writer = self._require_writer()
        report = await self.verify()
        if not report.ok:
            raise LogUnavailable(
                f"refusing to prune a log that fails verification: {report.message}"
            )
        removed, more = 0, True
        while more:  # chunk by chunk, so a running bot never waits long for the write lock
            count, more = await writer.submit(
                writes.prune_step(utc_text(cutoff), utc_text(utc_now()))
            )
            removed += count
        return removed, await self.verify()

    # -- reads (the read-only connection) ---------------------------------------------

    async def get(self, decision_id: str) -> Decision | None:
        found = await queries.by_id(self._reader, decision_id)
        return found.decision if found else None

    @damage_checked
    async def get_stored(self, ref: str) -> StoredDecision | None:
        return await queries.by_id(self._reader, ref)

    @damage_checked
    async def stream_of(self, decision_id: str) -> StreamRecord | None:
        return await streams.stream_of(self._reader, decision_id)

    @damage_checked
    async def short_ids(self, ids: Sequence[str]) -> dict[str, str]:
        return await queries.short_ids(self._reader, ids)

    async def query(self, *, limit: int = 50, **filters: Any) -> list[Decision]:
        # filters: those of queries.Filters (the protocol names them)
        return [s.decision for s in await self.query_stored(limit=limit, **filters)]

    @damage_checked
    async def query_stored(self, *, limit: int = 50, **filters: Any) -> list[StoredDecision]:
        where, params = Filters(**filters).where()
        try:
            return await queries.fetch(self._reader, where, params, order="seq DESC", limit=limit)
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc):
                raise ValueError(f"cannot search for {filters.get('text')!r}: {exc}") from None
            raise

    async def iter_stored(
        self, *, since: datetime | None = None, until: datetime | None = None, page: int = 500
    ) -> AsyncIterator[StoredDecision]:
        where, params = Filters(since=since, until=until).where()
        after = 0
        while True:
            try:
                batch = await queries.fetch(
                    self._reader, f"{where} AND seq > ?", (*params, after), order="seq", limit=page
                )
            except sqlite3.DatabaseError as exc:
                raise LogUnavailable(damaged(self.path, exc)) from None
            for stored in batch:
                yield stored
            if len(batch) < page:
                return
            after = batch[-1].seq

    async def history(
        self,
        platform: str,
        channel_id: str,
        thread_id: str,
        *,
        max_turns: int,
        max_chars: int,
        before: str | None = None,
    ) -> list[Turn]:
        query = queries.HistoryQuery(platform, channel_id, thread_id, max_turns, max_chars, before)
        if self._on_loop is not None and not query.empty:
            # An indexed read of a few rows costs less here than a hop to the reader's
            # thread and back, and generation waits for it. WAL: it never waits on the writer.
            try:
                return query.turns(self._on_loop.execute(*query.sql()).fetchall())
            except sqlite3.OperationalError:
                pass  # busy (another process recovering the WAL): the thread may wait, not this
        return await queries.history(self._reader, query)

    async def tokens_used_since(
        self,
        since: datetime,
        *,
        user_id: str | None = None,
        channel_id: str | None = None,
        platform: str | None = None,
    ) -> int:
        return await queries.tokens_used_since(
            self._reader, since, user_id=user_id, channel_id=channel_id, platform=platform
        )

    @damage_checked
    async def settings(self) -> list[SettingRow]:
        return await settings_sql.settings(self._reader)

    @damage_checked
    async def admin_actions(self, limit: int = 50) -> list[AdminActionRow]:
        return await settings_sql.admin_actions(self._reader, limit)

    async def replay_runs(self, limit: int = 20) -> list[ReplayRunRow]:
        return await settings_sql.replay_runs(self._reader, limit)

    @damage_checked
    async def stats(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        return await stats_sql.compute(self._reader, since, until)

    @damage_checked
    async def verify(self) -> ChainReport:
        """Walk the hash chain on a connection of its own (one consistent snapshot)."""
        db = await connect(self.path, read_only=True)
        try:
            checks = (structure.schema_problem, structure.search_index_problem)
            try:
                return await integrity.verify(db, checks)
            except sqlite3.OperationalError:  # a table or column gone: say which
                found = await structure.schema_problem(db)
                if found is None:
                    raise
                return found
        finally:
            await db.close()

    @damage_checked
    async def check_anchor(self, seq: int, sha256: str) -> str | None:
        return await integrity.check_anchor(self._reader, seq, sha256)

    @damage_checked
    async def count_before(self, cutoff: datetime) -> int:
        return (await self.prunable(cutoff)).get("decision", 0)

    @damage_checked
    async def prunable(self, cutoff: datetime) -> dict[str, int]:
        return await integrity.prunable(self._reader, cutoff)

    @damage_checked
    async def integrity_check(self) -> str:
        rows = await self._reader.execute_fetchall("PRAGMA integrity_check")
        return "; ".join(str(r[0]) for r in rows)
