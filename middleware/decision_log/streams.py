"""The record of streamed replies: each chunk on record before it is shown.

A streamed reply is shown chunk by chunk while its decision is still being
made, so the decision row (written once, at the end) cannot be what makes the
audit hold per chunk. Each released chunk is one ``stream_events`` row,
committed before the chunk is shown (audit-before-send per chunk); when the
decision is recorded an ``end`` row holds the whole stream record (time to
first visible text, chunks and their verdicts, characters shown, retracted or
not, delivery failures). A crash mid-stream still leaves every chunk a user
saw on record.

The rows are hash-chained among themselves (``sha256 = H(prev + H(content))``
in ``seq`` order, :func:`.chain.link`), so an edited, inserted or deleted
chunk shows in :func:`verify`. Texts follow the log's text policy (secrets
masked, dropped with ``store_text = false``; hash and length kept).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiosqlite

from middleware.decision_log.chain import GENESIS, Chainer, ChainReport, link
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.records import insert_sql, utc_text
from middleware.decision_log.writes import Op
from middleware.types import StreamChunk, StreamRecord, utc_now

STREAM_SQL = """
CREATE TABLE stream_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('chunk', 'end')),
    chunk_index INTEGER,
    text TEXT,
    text_chars INTEGER NOT NULL,
    text_sha256 TEXT NOT NULL,
    shown_chars INTEGER NOT NULL,
    record_json TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL
) STRICT;
CREATE INDEX stream_events_decision ON stream_events (decision_id, seq);
CREATE TRIGGER stream_events_no_update BEFORE UPDATE ON stream_events BEGIN
    SELECT RAISE(ABORT, 'stream_events are append-only');
END;
CREATE TRIGGER stream_events_no_delete BEFORE DELETE ON stream_events BEGIN
    SELECT RAISE(ABORT, 'stream_events are append-only');
END;
"""
HASHED = (
    "decision_id", "created_utc", "kind", "chunk_index", "text_chars", "text_sha256",
    "shown_chars", "record_json",
)  # fmt: skip
COLUMNS = (*HASHED, "text", "prev_sha256", "sha256")  # as inserted; the table numbers `seq`
INSERT = insert_sql("stream_events", COLUMNS)
HEAD_SQL = "SELECT sha256 FROM stream_events ORDER BY seq DESC LIMIT 1"


def content_sha256(row: dict[str, Any]) -> str:
    """The hash of what the row says (the text by its own hash, as decisions do)."""
    blob = json.dumps([row[c] for c in HASHED], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chunk_row(
    decision_id: str, chunk: StreamChunk, text: str, policy: TextPolicy
) -> dict[str, Any]:
    stored, chars, sha = policy.content(text)
    return {
        "decision_id": decision_id, "created_utc": utc_text(utc_now()), "kind": "chunk",
        "chunk_index": chunk.index, "text": stored, "text_chars": chars, "text_sha256": sha,
        "shown_chars": chunk.shown_chars,
        "record_json": policy.mask(chunk.model_dump_json(exclude_none=True)),
    }  # fmt: skip


def end_row(decision_id: str, record: StreamRecord, policy: TextPolicy) -> dict[str, Any]:
    stored, chars, sha = policy.content("")
    return {
        "decision_id": decision_id, "created_utc": utc_text(utc_now()), "kind": "end",
        "chunk_index": None, "text": stored, "text_chars": chars, "text_sha256": sha,
        "shown_chars": record.shown_chars,
        "record_json": policy.mask(record.model_dump_json(exclude_none=True)),
    }  # fmt: skip


def append(row: dict[str, Any]) -> Op:
    """Chain ``row`` onto the stream events, inside the writer's transaction."""

    async def run(db: aiosqlite.Connection, _chain: Chainer) -> None:
        # Its own chain: the decision chain's walk covers the kinds it knows.
        found = list(await db.execute_fetchall(HEAD_SQL))
        prev = found[0][0] if found else GENESIS
        sha = link(prev, content_sha256(row))
        await db.execute(INSERT, {**row, "prev_sha256": prev, "sha256": sha})

    return Op(run)


async def stream_of(db: aiosqlite.Connection, decision_id: str) -> StreamRecord | None:
    """The stream record of a decision (its ``end`` row), or None if it was not streamed.

    A stream cut off before its end row (a crash) is rebuilt from its chunk rows.
    """
    rows = list(
        await db.execute_fetchall(
            "SELECT kind, record_json FROM stream_events WHERE decision_id = ? ORDER BY seq",
            (decision_id,),
        )
    )
    if not rows:
        return None
    if rows[-1][0] == "end":
        return StreamRecord.model_validate_json(rows[-1][1])
    chunks = [StreamChunk.model_validate_json(r[1]) for r in rows if r[0] == "chunk"]
    return StreamRecord(
        chunk_chars=0, context_chars=0, max_hold_ms=0, chunks=chunks,
        shown_chars=max((c.shown_chars for c in chunks), default=0),
        note="the stream's end was never recorded",
    )  # fmt: skip


async def verify(db: aiosqlite.Connection) -> ChainReport:
    """Walk the stream events' chain; the first row that does not fit is named."""
    prev, checked, last_id = GENESIS, 0, None
    columns = ("seq", *COLUMNS)
    rows = await db.execute_fetchall(f"SELECT {', '.join(columns)} FROM stream_events ORDER BY seq")
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        if row["prev_sha256"] != prev or link(prev, content_sha256(row)) != row["sha256"]:
            return ChainReport(
                ok=False, checked=checked, head_sha256=prev, head_id=last_id,
                start_sha256=GENESIS, problem="changed", bad_id=row["decision_id"],
                bad_seq=row["seq"],
                message=f"stream event #{row['seq']} of decision {row['decision_id']} was "
                "changed, inserted or a row before it deleted",
            )  # fmt: skip
        prev, checked, last_id = row["sha256"], checked + 1, row["decision_id"]
    return ChainReport(
        ok=True, checked=checked, head_sha256=prev, head_id=last_id, start_sha256=GENESIS
    )
