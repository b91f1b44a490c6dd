"""Walking the stored chain (`guardbot verify`) and counting what a prune would remove.

Verification reads the rows back exactly as stored, recomputes each content
hash and hands the links to :func:`chain.walk`. Pruning itself is a write
(:func:`.writes.prune_step`): the oldest decisions go in chunks, so a running
bot never waits long for the write lock, each behind a checkpoint with the
hash of the last row it removes, which is where verification of the
remaining chain starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiosqlite

from middleware.decision_log.chain import GENESIS, ChainReport, StoredLink, walk
from middleware.decision_log.decode import (
    CANDIDATE_SELECT,
    DECISION_SELECT,
    LLM_CALL_SELECT,
    VERDICT_SELECT,
    named,
)
from middleware.decision_log.privacy import sha256_hex
from middleware.decision_log.queries import children
from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    CHAINED_COLUMNS,
    LLM_CALL_COLUMNS,
    VERDICT_COLUMNS,
    content_sha256_of,
    utc_text,
)
from middleware.decision_log.writes import PREFIX_SQL

PAGE = 1000


async def checkpoint(db: aiosqlite.Connection) -> tuple[int, str]:
    """(last pruned seq, its hash), or (0, GENESIS) for a log never pruned."""
    rows = list(
        await db.execute_fetchall(
            "SELECT through_seq, through_sha256 FROM chain_checkpoints ORDER BY id DESC LIMIT 1"
        )
    )
    return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)


class _Lookup:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def seq_with_sha256(self, sha256: str, before_seq: int) -> int | None:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT seq FROM decisions WHERE sha256 = ? AND seq < ? ORDER BY seq LIMIT 1",
                (sha256, before_seq),
            )
        )
        return rows[0][0] if rows else None

    async def row_after(self, seq: int) -> tuple[int, str] | None:
        rows = list(
            await self.db.execute_fetchall(
                "SELECT seq, id FROM decisions WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
            )
        )
        return (rows[0][0], rows[0][1]) if rows else None


async def _links(db: aiosqlite.Connection, after_seq: int) -> AsyncIterator[StoredLink]:
    while True:
        rows: list[Any] = list(
            await db.execute_fetchall(
                f"SELECT {DECISION_SELECT} FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, PAGE),
            )
        )
        if not rows:
            return
        ids = [r[1] for r in rows]
        verdicts = await children(db, f"SELECT {VERDICT_SELECT} FROM verdicts", ids, "position")
        cands = await children(
            db, f"SELECT {CANDIDATE_SELECT} FROM candidates", ids, "candidate_index"
        )
        calls = await children(db, f"SELECT {LLM_CALL_SELECT} FROM llm_calls", ids, "position")
        for values, i in zip(rows, ids, strict=True):
            row = dict(zip(CHAINED_COLUMNS, values, strict=True))
            c = named(CANDIDATE_COLUMNS, cands[i])
            content = content_sha256_of(
                row, named(VERDICT_COLUMNS, verdicts[i]), c, named(LLM_CALL_COLUMNS, calls[i])
            )
            if not _texts_match(row, c):
                content = "text does not match its stored hash"
            yield StoredLink(row["seq"], i, content, row["prev_sha256"], row["sha256"])
        after_seq = rows[-1][0]


def _texts_match(row: dict[str, Any], candidates: list[dict[str, Any]]) -> bool:
    """Stored texts against their hashes (the chain covers the hashes, not the texts)."""
    pairs = [
        (row["text"], row["text_sha256"]),
        (row["reply"], row["reply_sha256"]),
        *((c["text"], c["text_sha256"]) for c in candidates),
    ]
    return all(text is None or sha256_hex(text) == sha for text, sha in pairs)


async def verify(db: aiosqlite.Connection) -> ChainReport:
    """Walk the whole chain inside one read transaction (a consistent snapshot)."""
    await db.execute("BEGIN")
    try:
        start_seq, start_sha = await checkpoint(db)
        stray = list(
            await db.execute_fetchall(
                "SELECT seq, id FROM decisions WHERE seq <= ? ORDER BY seq LIMIT 1", (start_seq,)
            )
        )
        if stray:
            seq, rid = stray[0]
            return ChainReport(
                ok=False, checked=0, head_sha256=start_sha, head_id=None, start_sha256=start_sha,
                problem="inserted", bad_id=rid, bad_seq=seq,
                message=f"decision {rid} (#{seq}) was inserted into the pruned part of the log",
            )  # fmt: skip
        return await walk(_links(db, start_seq), start_sha, start_seq, _Lookup(db))
    finally:
        await db.execute("COMMIT")


async def count_prunable(db: aiosqlite.Connection, cutoff: datetime) -> int:
    rows = await db.execute_fetchall(
        f"SELECT count(*) FROM decisions WHERE {PREFIX_SQL}", (utc_text(cutoff),)
    )
    return int(next(iter(rows))[0])
