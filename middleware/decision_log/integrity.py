"""Walking the stored chain (`guardbot verify`) and counting what a prune would remove.

Verification reads the rows back exactly as stored, recomputes each content
hash and hands the links to :func:`chain.walk`. Pruning itself is a write
(:func:`.writes.prune_step`): the oldest decisions go in chunks, so a running
bot never waits long for the write lock, each behind a checkpoint with the
hash of the last row it removes, which is where verification of the
remaining chain starts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiosqlite

from middleware.decision_log import queries, streams
from middleware.decision_log.chain import (
    ChainReport,
    Flaw,
    Ref,
    StoredLink,
    UndecidedStream,
    failure,
    version_at,
    walk,
)
from middleware.decision_log.privacy import sha256_hex
from middleware.decision_log.queries import DECISION_SELECT
from middleware.decision_log.records import (
    ADMIN_HASHED,
    CHAINED_COLUMNS,
    CHECKPOINT_COLUMNS,
    DELIVERY_COLUMNS,
    PARTS,
    ROWS_COLUMN,
    content_sha256_of,
    row_sha256,
    rows_sha256,
    utc_text,
)
from middleware.decision_log.trail import Discrepancy, Key, SettingState, compare
from middleware.decision_log.writes import (
    CHAINED_RECORDS,
    CHAINED_TABLES,
    HEAD_SQL,
    PREFIX_SQL,
    checkpoint,
    first,
    settings_state,
)

PAGE = 1000
# Chunks shown whose decision was never recorded, nor their stream's end (written after
# the decision; a decision pruned since leaves its end row). Listed, never failed: a crash
# mid-stream leaves them legitimately, and they are what a user saw.
UNDECIDED_STREAMS_SQL = (
    "SELECT decision_id, count(*), max(shown_chars), max(seq) FROM stream_events AS s "
    "WHERE kind = 'chunk' AND NOT EXISTS (SELECT 1 FROM decisions AS d WHERE d.id = "
    "s.decision_id) AND NOT EXISTS (SELECT 1 FROM stream_events AS e WHERE e.decision_id = "
    "s.decision_id AND e.kind = 'end') GROUP BY decision_id ORDER BY max(seq) LIMIT 1000"
)
NO_END = 2**63 - 1  # the largest seq an INTEGER / bigint column holds
Content = Callable[[Mapping[str, Any]], str]  # a stored row's content hash, as chained
Check = Callable[[aiosqlite.Connection], Awaitable["ChainReport | None"]]  # a problem, or None


def _hashed(columns: tuple[str, ...]) -> Content:
    return lambda row: row_sha256(columns, row)


# The chained tables besides decisions: (kind as SQL, table, columns read, id, content).
OTHERS: tuple[tuple[str, str, tuple[str, ...], str, Content], ...] = (
    ("'delivery'", "deliveries", DELIVERY_COLUMNS, "id", _hashed(DELIVERY_COLUMNS)),
    ("'admin action'", "admin_actions", ADMIN_HASHED, "id", _hashed(ADMIN_HASHED)),
    ("'checkpoint'", "chain_checkpoints", CHECKPOINT_COLUMNS, "id", _hashed(CHECKPOINT_COLUMNS)),
    (streams.KIND_SQL, "stream_events", streams.COLUMNS, "id", streams.content_sha256),
)


class _Lookup:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def _first(self, where: str, params: Sequence[Any]) -> Ref | None:
        sql = f"SELECT kind, seq, rid FROM ({CHAINED_RECORDS}) AS r WHERE {where} ORDER BY seq"
        found = await first(self.db, sql + " LIMIT 1", params)
        return None if found is None else (found[0], found[1], str(found[2]))

    async def with_sha256(self, sha256: str, before_seq: int) -> Ref | None:
        return await self._first("sha256 = ? AND seq < ?", (sha256, before_seq))

    async def with_prev(self, sha256: str, after_seq: int) -> Ref | None:
        return await self._first("prev_sha256 = ? AND seq > ?", (sha256, after_seq))

    async def after(self, seq: int) -> Ref | None:
        return await self._first("seq > ?", (seq,))


async def _links(
    db: aiosqlite.Connection, after_seq: int, versions: list[tuple[int, int]]
) -> AsyncIterator[StoredLink]:
    """Every chained record after ``after_seq``, in seq order."""
    async for page in pages(db, after_seq, versions):
        for link in page:
            yield link


async def pages(
    db: aiosqlite.Connection, after_seq: int, versions: list[tuple[int, int]], size: int = PAGE
) -> AsyncIterator[list[StoredLink]]:
    """The chained records after ``after_seq`` in seq order, a window of seqs at a time.

    Each window ends before the ``size + 1``-th record of any one table, so a page
    holds at most ``size`` records per table however the kinds are mixed (a long
    run of refused admin attempts after the last decision included), and at least
    ``size`` records in all unless it is the last.
    """
    while True:
        end: int | None = None  # the last window has no upper bound: a seq beyond any
        for _, table, _ in CHAINED_TABLES:  # number is still read (and reported)
            sql = f"SELECT seq FROM {table} WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?"
            if (nth := await first(db, sql, (after_seq, size))) is not None:
                end = nth[0] - 1 if end is None else min(end, nth[0] - 1)
        window, bounds = ("seq > ?", (after_seq,)) if end is None else (
            "seq > ? AND seq <= ?", (after_seq, end))  # fmt: skip
        rows: list[Any] = list(
            await db.execute_fetchall(
                f"SELECT {DECISION_SELECT} FROM decisions WHERE {window} ORDER BY seq", bounds
            )
        )
        page = await _decision_links(db, rows, versions)
        for kind_sql, table, columns, rid, content in OTHERS:
            found = await db.execute_fetchall(
                f"SELECT {', '.join(columns)}, {rid}, seq, prev_sha256, sha256, {kind_sql} "
                f"FROM {table} WHERE {window} ORDER BY seq",
                bounds,
            )
            for *values, i, seq, prev, sha, kind in found:
                sha_of = content(dict(zip(columns, values, strict=True)))
                page.append(
                    StoredLink(kind, seq, str(i), sha_of, prev, sha, version_at(versions, seq))
                )
        if len(page) > len(rows):
            page.sort(key=lambda link: link.seq)
        if page:
            yield page
        if end is None:
            return
        after_seq = end


async def _decision_links(
    db: aiosqlite.Connection, rows: list[Any], versions: list[tuple[int, int]]
) -> list[StoredLink]:
    if not rows:
        return []
    ids = [r[1] for r in rows]
    verdicts, cands, calls = await queries.parts(db, ids)
    out = []
    for values, i in zip(rows, ids, strict=True):
        row = dict(zip(CHAINED_COLUMNS, values, strict=True))
        parts = (verdicts[i], cands[i], calls[i])
        content = content_sha256_of(row, *parts)
        # With its rows' hashes each part is checked against its own (a flaw); without,
        # the candidates' texts are checked with the decision's.
        hashed = row[ROWS_COLUMN] is not None
        flaw = _part_flaw(i, row[ROWS_COLUMN], parts) if hashed else None
        if not _texts_match([row] if hashed else [row, *parts[1]]):
            content = "text does not match its stored hash"
        seq = row["seq"]
        link = (row["prev_sha256"], row["sha256"], version_at(versions, seq), flaw)
        out.append(StoredLink("decision", seq, i, content, *link))
    return out


def _texts_match(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Stored texts against their hashes (the chain covers the hashes, not the texts)."""
    pairs = [(r[c], r[f"{c}_sha256"]) for r in rows for c in ("text", "reply") if c in r]
    return all(text is None or sha256_hex(text) == sha for text, sha in pairs)


def _part_flaw(
    decision_id: str, stored_json: str, parts: Sequence[Sequence[Mapping[str, Any]]]
) -> Flaw | None:
    """The first verdict, candidate or model call that differs from the hashes the
    decision committed to (the decision's own link is checked by the walk)."""
    try:
        committed = json.loads(stored_json)
    except ValueError:
        committed = None  # the link fails too: the walk names the decision first
    if not isinstance(committed, list) or len(committed) != len(PARTS):
        return None
    for (kind, _, key, _), rows, hashes, stored in zip(
        PARTS, parts, rows_sha256(*parts), committed, strict=True
    ):
        want = {str(k): sha for k, sha in stored}
        seen: set[str] = set()
        for row, (k, sha) in zip(rows, hashes, strict=True):
            name = f"{decision_id}/{k}"
            if str(k) in seen or str(k) not in want:
                return Flaw("inserted", kind, name, f"{kind} {name} was inserted: decision "
                            f"{decision_id} does not list it")  # fmt: skip
            seen.add(str(k))
            if want[str(k)] != sha or not _texts_match([row]):
                return Flaw("changed", kind, name, f"{kind} {name} was changed after it was "
                            f"written: it no longer matches the hash decision {decision_id} "
                            "holds for it")  # fmt: skip
        for k in want:
            if k not in seen:
                name = f"{decision_id}/{k}"
                return Flaw("deleted", kind, name, f"{kind} {name} was deleted: decision "
                            f"{decision_id} lists it ({key} {k})")  # fmt: skip
    return None


async def verify(db: aiosqlite.Connection, checks: Sequence[Check] = ()) -> ChainReport:
    """Walk the whole chain, then the rows off it, the settings and the backend's own
    ``checks`` (what only it has: a schema, a search index), in one read snapshot."""
    await db.execute("BEGIN")
    try:
        report = await _verify(db, checks)
        found = await db.execute_fetchall(UNDECIDED_STREAMS_SQL)
        return replace(
            report, undecided_streams=[UndecidedStream(str(r[0]), *r[1:]) for r in found]
        )
    finally:
        await db.execute("COMMIT")


async def _verify(db: aiosqlite.Connection, checks: Sequence[Check]) -> ChainReport:
    versions = [(r[0], r[1]) for r in await db.execute_fetchall(
        "SELECT version, from_seq FROM chain_versions ORDER BY version")]  # fmt: skip
    head = await first(db, HEAD_SQL)
    if head is None or not versions:
        what = "head" if head is None else "format table"
        return failure("deleted", "chain head", "-", None, f"the chain's {what} was deleted")
    start_seq, start_sha, _, own_seq, cid = await checkpoint(db)
    v2_from = min((f for v, f in versions if v >= 2), default=NO_END)
    if own_seq is None and start_seq >= v2_from:
        return failure(
            "inserted", "checkpoint", cid, None,
            f"checkpoint {cid} was inserted: it is not on the chain, yet claims records up "
            f"to #{start_seq}",
        )  # fmt: skip
    stray = await _off_chain(db, start_seq)
    if stray is not None and stray.problem == "inserted" and stray.bad_seq is not None:
        return stray  # a record in the pruned part: the walk would start past it
    links = _links(db, start_seq, versions)
    report = await walk(links, start_sha, start_seq, _Lookup(db), (head[0], head[1]))
    if not report.ok and report.problem == "deleted" and stray is not None:
        # A record taken off the chain (its seq cleared) is a gap to the walk: say where it is.
        where = f"; {stray.bad_kind} {stray.bad_id} is still in the log, off the chain"
        return replace(report, message=report.message + where)
    if not report.ok:
        return report
    found = stray or await _settings_problem(db)
    warnings: list[str] = []
    for check in checks:
        if found is None and (found := await check(db)) is not None and found.ok:
            warnings += found.warnings  # it could not run (chain.not_checked): not a failure
            found = None
    if found is not None:  # found after the chain verified: keep what the walk established
        return replace(
            found, checked=report.checked, head_sha256=report.head_sha256,
            head_id=report.head_id, start_sha256=report.start_sha256, counts=report.counts,
            head_seq=report.head_seq, head_kind=report.head_kind, warnings=warnings,
        )  # fmt: skip
    return replace(report, warnings=warnings)


async def _off_chain(db: aiosqlite.Connection, start_seq: int) -> ChainReport | None:
    """A record in the pruned part of the log, or one that is not on the chain at all."""
    for kind_sql, table, rid in CHAINED_TABLES:
        sql = f"SELECT seq, {rid}, {kind_sql} FROM {table} WHERE seq <= ? ORDER BY seq LIMIT 1"
        if (found := await first(db, sql, (start_seq,))) is not None:
            seq, i, kind = found
            message = f"{kind} {i} (#{seq}) was inserted into the pruned part of the log"
            return failure("inserted", kind, str(i), seq, message)
    for kind_sql, table, rid in CHAINED_TABLES[1:3]:  # the tables v1 logs held unchained
        sql = f"SELECT {rid}, {kind_sql} FROM {table} WHERE seq IS NULL LIMIT 1"
        if (found := await first(db, sql)) is not None:
            i, kind = found
            message = f"{kind} {i} was inserted: it is not on the chain"
            return failure("inserted", kind, str(i), None, message)
    for kind, table, key, _ in PARTS:  # a part whose decision is not in the log (pruned or never)
        sql = (
            f"SELECT decision_id, {key} FROM {table} AS t WHERE NOT EXISTS "
            "(SELECT 1 FROM decisions AS d WHERE d.id = t.decision_id) LIMIT 1"
        )
        if (found := await first(db, sql)) is not None:
            name = f"{found[0]}/{found[1]}"
            message = f"{kind} {name} was inserted: its decision {found[0]} is not in the log"
            return failure("inserted", kind, name, None, message)
    return None


async def derived_settings(
    db: aiosqlite.Connection,
) -> tuple[dict[Key, SettingState], list[Discrepancy]]:
    """The settings in force as the chained trail derives them, and the table's disagreements."""
    start_seq, _, snapshot, _, _ = await checkpoint(db)
    state = await settings_state(db, start_seq, NO_END, snapshot)
    table = await db.execute_fetchall(
        "SELECT scope, key, value_json, updated_utc, actor FROM settings ORDER BY scope, key"
    )
    return state, compare(state, [(r[0], r[1], r[2], r[3], r[4]) for r in table])


async def _settings_problem(db: aiosqlite.Connection) -> ChainReport | None:
    _, problems = await derived_settings(db)
    if not problems:
        return None
    first = problems[0]
    return failure(first.problem, "setting", first.id, None, first.message)


async def prunable(db: aiosqlite.Connection, cutoff: datetime) -> dict[str, int]:
    """The records a prune at ``cutoff`` removes, per kind: the prefix of the chain up to
    the first record not old enough, every kind (admin actions too: the settings in force
    at the cut survive in the checkpoint the prune writes)."""
    counts: dict[str, int] = {}
    for kind_sql, table, _ in CHAINED_TABLES:
        found = await db.execute_fetchall(
            f"SELECT {kind_sql} AS kind, count(*) FROM {table} WHERE {PREFIX_SQL} GROUP BY 1",
            (utc_text(cutoff),),
        )
        counts |= {str(kind): int(n) for kind, n in found}
    return counts


async def check_anchor(db: aiosqlite.Connection, seq: int, sha256: str) -> str | None:
    """Whether record ``seq`` still has the hash noted for it (``guardbot verify --anchor``):
    None if it has, else what became of it. A chain without a secret can be rewritten from
    some record on, head included; a hash noted elsewhere is what shows it."""
    through_seq, through_sha, _, _, _ = await checkpoint(db)
    if seq < through_seq:
        return (f"record #{seq} was pruned (the last prune checkpoint covers up to "
                f"#{through_seq}): it cannot be checked; anchor a newer head")  # fmt: skip
    if seq == through_seq:  # the last record pruned: its checkpoint holds its hash
        found = ("record", "pruned through this checkpoint", through_sha)
    else:
        found = await first(
            db, f"SELECT kind, rid, sha256 FROM ({CHAINED_RECORDS}) AS r WHERE seq = ?", (seq,)
        )
    if found is None:
        head = await first(db, HEAD_SQL)
        last = f"#{head[0]}" if head else "missing"
        return f"record #{seq} is not in the log (its head is {last}): it was removed"
    kind, rid, now = found
    if now != sha256.lower():
        return (f"record #{seq} ({kind} {rid}) has sha256 {now}, not the noted {sha256}: the "
                f"log was rewritten from #{seq} on, or the note is wrong")  # fmt: skip
    return None
