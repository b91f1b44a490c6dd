"""Tamper evidence: `verify` names the first decision changed, inserted or deleted; pruning."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.chain import content_sha256, link, link_v2
from middleware.decision_log.records import (
    ROWS_COLUMN,
    EncodedDecision,
    content_sha256_of,
    insert_sql,
)
from tests.support.decision_log_support import drop_guards, make_decision, raw_db


async def fill(path: Path, n: int, *, old: int = 0) -> list[str]:
    """n decisions; the first ``old`` of them 100 days old."""
    log = await DecisionLog.open(path)
    ids = []
    for i in range(n):
        created = datetime.now(UTC) - timedelta(days=100) if i < old else None
        d = make_decision(f"message {i}", reply=f"reply {i}", created=created)
        await log.record(d)
        ids.append(d.id)
    await log.close()
    return ids


async def verify(path: Path):  # type: ignore[no-untyped-def]
    log = await DecisionLog.open(path, read_only=True)
    try:
        return await log.verify()
    finally:
        await log.close()


async def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 5)
    report = await verify(path)
    assert report.ok and report.checked == 5 and report.head_id == ids[-1]
    empty = tmp_path / "empty.db"
    await (await DecisionLog.open(empty)).close()
    assert (await verify(empty)).ok


async def test_the_log_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    await fill(path, 2)
    with raw_db(path) as db:
        for sql in (
            "UPDATE decisions SET reply = 'x'",
            "DELETE FROM decisions",
            "UPDATE verdicts SET outcome = 'allow'",
            "UPDATE candidates SET chosen = 0",
            "UPDATE llm_calls SET tokens_in = 0",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)


@pytest.mark.parametrize(
    ("sql", "problem", "kind", "part"),
    [
        ("UPDATE decisions SET reply = 'I never said that' WHERE seq = 3", "changed", "decision",
         ""),
        ("UPDATE decisions SET action = 'blocked', blocked_by = 'judge' WHERE seq = 3",
         "changed", "decision", ""),
        ("UPDATE decisions SET cost_usd = 0 WHERE seq = 3", "changed", "decision", ""),
        ("UPDATE decisions SET rows_sha256_json = '[[],[],[]]' WHERE seq = 3", "changed",
         "decision", ""),
        ("UPDATE verdicts SET outcome = 'block' WHERE decision_id = (SELECT id FROM decisions "
         "WHERE seq = 3) AND position = 0", "changed", "verdict", "/0"),
        ("DELETE FROM candidates WHERE decision_id = (SELECT id FROM decisions WHERE seq = 3)",
         "deleted", "candidate", "/0"),
        ("INSERT INTO llm_calls SELECT decision_id, 9, purpose, model, 0, 0, 0, NULL FROM "
         "llm_calls WHERE decision_id = (SELECT id FROM decisions WHERE seq = 3)", "inserted",
         "llm call", "/9"),
    ],
)  # fmt: skip
async def test_an_edit_names_the_row(
    tmp_path: Path, sql: str, problem: str, kind: str, part: str
) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 5)
    with raw_db(path) as db:
        drop_guards(db)
        assert db.execute(sql).rowcount == 1
    report = await verify(path)
    assert not report.ok and (report.problem, report.bad_kind) == (problem, kind)
    assert report.bad_id == ids[2] + part and report.bad_seq == 3
    assert ids[2] + part in report.message


async def test_an_edit_with_a_recomputed_hash_still_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 5)
    log = await DecisionLog.open(path)
    forged = make_decision("message 2", reply="a reply I prefer")
    await log.close()
    with raw_db(path) as db:
        drop_guards(db)
        # Rewrite row 3 as a careful forger would: new content, hash recomputed from row 2.
        prev = db.execute("SELECT prev_sha256 FROM decisions WHERE seq = 3").fetchone()[0]
        from middleware.decision_log.privacy import TextPolicy
        from middleware.decision_log.records import encode

        enc = encode(forged.model_copy(update={"id": ids[2]}), TextPolicy())
        db.execute(
            "UPDATE decisions SET reply = :reply, reply_sha256 = :reply_sha256, "
            "reply_chars = :reply_chars, sha256 = :sha256 WHERE seq = 3",
            {**enc.row, "sha256": link_v2("decision", 3, prev, enc.content_sha256)},
        )
        db.execute(
            "UPDATE candidates SET text = :text, text_sha256 = :text_sha256, "
            "text_chars = :text_chars WHERE decision_id = :decision_id",
            {**enc.candidates[0], "decision_id": ids[2]},
        )
    report = await verify(path)
    assert not report.ok and report.problem == "changed" and report.bad_id == ids[2]


async def test_a_text_edit_is_caught_by_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 3)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute("UPDATE candidates SET text = 'edited' WHERE decision_id = ?", (ids[1],))
    report = await verify(path)
    assert (report.problem, report.bad_kind, report.bad_id) == (
        "changed",
        "candidate",
        ids[1] + "/0",
    )


async def test_a_deletion_is_named(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 5)
    with raw_db(path) as db:
        db.execute("PRAGMA foreign_keys = ON")
        drop_guards(db)
        db.execute("DELETE FROM decisions WHERE seq = 3")
    report = await verify(path)
    assert not report.ok and report.problem == "deleted"
    assert report.bad_id == ids[3] and report.checked == 2
    assert f"after decision {ids[1]}" in report.message


async def test_deleting_the_first_rows_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 3)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute("DELETE FROM decisions WHERE seq = 1")
    report = await verify(path)
    assert report.problem == "deleted" and report.bad_id == ids[1]
    assert "start of the log" in report.message


async def test_a_cut_tail_written_on_is_caught_by_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    await fill(path, 4)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute("DELETE FROM decisions WHERE seq >= 3")
    report = await verify(path)
    assert report.problem == "deleted" and report.bad_seq == 4  # the head remembers #4
    assert "#3..#4" in report.message
    new_ids = await fill(path, 1)  # ...and the next decision chains to the deleted #4
    report = await verify(path)
    assert report.problem == "deleted" and report.bad_id == new_ids[0]
    assert "deleted after decision" in report.message


async def test_an_insertion_is_named(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 4)
    with raw_db(path) as db:
        drop_guards(db)
        # Make room after row 2 and insert a forged row that chains correctly to row 2.
        db.execute("UPDATE decisions SET seq = seq + 10 WHERE seq >= 3")
        db.execute("UPDATE sqlite_sequence SET seq = seq + 10 WHERE name = 'decisions'")
        prev = db.execute("SELECT sha256 FROM decisions WHERE seq = 2").fetchone()[0]
        columns = [r[1] for r in db.execute("PRAGMA table_info(decisions)")]
        keep = ", ".join(c for c in columns if c not in ("seq", "id", "prev_sha256", "sha256"))
        db.execute(
            f"INSERT INTO decisions (seq, id, {keep}, prev_sha256, sha256) "
            f"SELECT 3, 'forged-id', {keep}, ?, ? FROM decisions WHERE seq = 2",
            (prev, link(prev, "0" * 64)),
        )
    report = await verify(path)
    assert not report.ok and report.problem in ("inserted", "changed")
    assert report.bad_id == "forged-id" and report.bad_seq == 3
    assert ids[2] not in (report.bad_id or "")


async def test_an_insertion_with_a_valid_hash_is_named_as_inserted(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 3)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute("UPDATE decisions SET seq = seq + 10 WHERE seq >= 2")
        # A perfect forgery of its own content, chained to row 1: only row 2's link shows it.
        row = db.execute("SELECT * FROM decisions WHERE seq = 1").fetchone()
        columns = [r[1] for r in db.execute("PRAGMA table_info(decisions)")]
    log = await DecisionLog.open(path)
    forged = make_decision("forged", reply="forged")
    await log.close()
    from middleware.decision_log.privacy import TextPolicy
    from middleware.decision_log.records import encode
    from middleware.decision_log.writes import INSERT_CHILDREN, INSERT_DECISION

    enc = encode(forged, TextPolicy())
    prev = row[columns.index("sha256")]
    with raw_db(path) as db:
        drop_guards(db)
        chained = {**enc.row, "seq": 2, "prev_sha256": prev}
        sha = link_v2("decision", 2, prev, enc.content_sha256)
        db.execute(INSERT_DECISION.sql, INSERT_DECISION.values({**chained, "sha256": sha}))
        for insert, rows in zip(INSERT_CHILDREN, enc.parts, strict=True):
            db.executemany(insert.sql, map(insert.values, rows))
    report = await verify(path)
    assert report.problem == "inserted" and report.bad_id == forged.id and report.bad_seq == 2
    assert ids[1] in report.message


async def test_prune_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 6, old=4)
    log = await DecisionLog.open(path)
    try:
        await log.record_delivery(ids[0], "sent", None)
        assert await log.count_before(datetime.now(UTC) - timedelta(days=90)) == 4
        removed, report = await log.prune(datetime.now(UTC) - timedelta(days=90))
        assert removed == 4 and report.ok
        # The delivery recorded late (after the recent decisions) stays on the chain.
        assert report.counts == {"decision": 2, "delivery": 1, "checkpoint": 1}
        assert report.start_sha256 != "0" * 64
        assert [d.id for d in await log.query()] == ids[:3:-1]
        assert await log.prune(datetime.now(UTC) - timedelta(days=90)) == (0, report)
        await log.record(make_decision("after the prune"))
        assert (await log.verify()).ok
        assert len(await log.query(text="message")) == 2  # search index pruned too
    finally:
        await log.close()
    with raw_db(path) as db:
        (through, count) = db.execute(
            "SELECT through_id, pruned_count FROM chain_checkpoints"
        ).fetchone()
        assert (through, count) == (ids[3], 4)
        for table in ("verdicts", "candidates", "llm_calls"):
            assert db.execute(
                f"SELECT count(*) FROM {table} WHERE decision_id IN ({','.join('?' * 4)})",
                ids[:4],
            ).fetchone() == (0,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # Deleting past the checkpoint is still refused.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM decisions")


async def test_prune_removes_stream_events_with_the_prefix_it_covers(tmp_path: Path) -> None:
    """Stream chunks are chained records: a prune takes them with their decision, verify
    still passes, and a chunk put back into the pruned part is named."""
    from middleware.types import StreamChunk, StreamRecord

    path = tmp_path / "g.db"
    log = await DecisionLog.open(path)
    try:
        streamed = make_decision("stream me", reply="One. Two.")
        for index, text in enumerate(("One. ", "Two.")):
            chunk = StreamChunk(index=index, raw_chars=4, chars=4, shown_chars=4, at_ms=1.0)
            await log.record_stream_chunk(streamed.id, chunk, text)
        await log.record(streamed)
        await log.record_stream_end(
            streamed.id, StreamRecord(chunk_chars=4, context_chars=8, max_hold_ms=1.0)
        )
        assert (await log.verify()).counts == {
            "stream chunk": 2, "decision": 1, "stream end": 1,
        }  # fmt: skip
        cutoff = datetime.now(UTC)
        await log.record(make_decision("recent", created=cutoff + timedelta(seconds=1)))
        removed, report = await log.prune(cutoff)
        assert removed == 1 and report.ok, report.message
        assert report.counts == {"checkpoint": 1, "decision": 1}
        assert await log.stream_of(streamed.id) is None
    finally:
        await log.close()
    with raw_db(path) as db:
        assert db.execute("SELECT count(*) FROM stream_events").fetchone() == (0,)
        drop_guards(db)
        db.execute(
            "INSERT INTO stream_events (decision_id, created_utc, kind, text_chars, text_sha256, "
            "shown_chars, record_json, seq, prev_sha256, sha256) VALUES ('x', "
            "'2026-01-01T00:00:00.000000Z', 'chunk', 0, '', 0, '{}', 2, '', '')"
        )
    report = await verify(path)
    assert (report.problem, report.bad_kind, report.bad_seq) == ("inserted", "stream chunk", 2)
    assert "pruned part" in report.message


async def test_prune_stops_at_the_first_recent_row(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    log = await DecisionLog.open(path)
    old = datetime.now(UTC) - timedelta(days=200)
    for created in (old, None, old):  # an old row *after* a recent one stays: prefix only
        await log.record(make_decision(created=created))
    removed, report = await log.prune(datetime.now(UTC) - timedelta(days=90))
    assert removed == 1 and report.ok and report.counts == {"decision": 2, "checkpoint": 1}
    await log.close()


async def test_prune_refuses_a_broken_chain_and_checkpoints_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    ids = await fill(path, 4, old=2)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute("UPDATE decisions SET reply = 'x' WHERE seq = 1")
    log = await DecisionLog.open(path)
    with pytest.raises(LogUnavailable, match="refusing to prune.*changed"):
        await log.prune(datetime.now(UTC) - timedelta(days=90))
    await log.close()
    clean = tmp_path / "clean.db"
    ids = await fill(clean, 4, old=2)
    log = await DecisionLog.open(clean)
    await log.prune(datetime.now(UTC) - timedelta(days=90))
    await log.close()
    with raw_db(clean) as db:
        drop_guards(db)
        db.execute("DELETE FROM chain_checkpoints")  # hiding the prune
    report = await verify(clean)
    assert report.problem == "deleted" and report.bad_id == ids[2]


def test_the_content_hash_is_the_sha256_of_compact_json() -> None:
    """The documented form auditors can recompute: JSON with "," and ":" separators, ASCII."""
    row = ("id1", 'é \u2028 "quoted"', 1.5e300, -0.0, 0.1, None, 2**70, True)
    verdicts, calls = [("id1", 0, "pii", 12.5)], [("id1", 0, "generation")]
    candidates: list[tuple[object, ...]] = []
    blob = json.dumps([row, verdicts, candidates, calls], separators=(",", ":"))
    assert (
        content_sha256(row, verdicts, candidates, calls)
        == hashlib.sha256(blob.encode("utf-8")).hexdigest()
    )


def _legacy(enc: EncodedDecision) -> tuple[dict[str, Any], str]:
    """A decision's row and content hash as written before decisions held their rows' hashes."""
    row = {k: v for k, v in enc.row.items() if k != ROWS_COLUMN}
    return row, content_sha256_of(row, enc.verdicts, enc.candidates, enc.llm_calls)


def test_the_chain_format_is_unchanged() -> None:
    """Hashes of logs written by earlier versions (v1 format, and v2 decisions before they
    held their rows' hashes) must keep verifying; the current form is pinned too."""
    from middleware.decision_log.privacy import TextPolicy
    from middleware.decision_log.records import encode

    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    d = make_decision("mail me at ann@example.com, key sk-abcdefghijklmnopqrstuvwx", created=at)
    d = d.model_copy(
        update={
            "id": "01JGOLDEN0000000000000000",
            "request": d.request.model_copy(update={"received_at": at}),
        }
    )
    # Computed by the version that wrote rows as positional tuples (commit 605edc5).
    assert _legacy(encode(d, TextPolicy()))[1] == (
        "d0a5b65884fd0f0be9d4e6c0759cf1e9b64db30b6fde6f0a6f9b19fe6e4c7653"
    )
    assert _legacy(encode(d, TextPolicy(store_text=False, redact_pii=True)))[1] == (
        "e5b3f52d18dee877462a50883d40de53fb5ec35cb27a1b0302456249f7aedf99"
    )
    # Since m004: the decision's values and its rows' [key, sha256] lists, as auditors can
    # recompute them with json.dumps (compact separators) and SHA-256.
    enc = encode(d, TextPolicy())
    assert enc.content_sha256 == (
        "0c7af5ba4003b2bb193c02dd085c8e98811727f04785c1c8bc1bdb48f32222db"
    )

    def sha(value: object) -> str:
        return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()

    rows = json.loads(enc.row[ROWS_COLUMN])
    assert rows[0] == [[v["position"], sha(list(v.values()))] for v in enc.verdicts]
    assert [k for k, _ in rows[1]] == [c["candidate_index"] for c in enc.candidates]
    values = [v for k, v in enc.row.items() if k not in ("text", "reply", ROWS_COLUMN)]
    assert enc.content_sha256 == sha([values, enc.row[ROWS_COLUMN]])


def test_the_other_records_hash_as_before() -> None:
    """Deliveries, admin actions, checkpoints and stream events: their content hashes of
    fixed rows, as the version before values were read by column getters computed them."""
    from middleware.decision_log import streams
    from middleware.decision_log.records import (
        ADMIN_HASHED,
        CHECKPOINT_COLUMNS,
        DELIVERY_COLUMNS,
        row_sha256,
    )

    delivery = {"decision_id": "x", "created_utc": "t", "status": "sent", "error": None}
    admin: dict[str, Any] = {c: f"v{c}" for c in ADMIN_HASHED}
    admin.update(allowed=1, changes_setting=0)
    golden = {
        "2a21a9ee9416ecfe4ac1269a98b62c5742a1af7a0f0fcae1aabf5771049b6025": row_sha256(
            DELIVERY_COLUMNS, delivery
        ),
        "4cbd9a27957bf5d5f65efd935f05e75f910e7b35ea57ee0b2cc1b1e951eb45f7": row_sha256(
            ADMIN_HASHED, admin
        ),
        "5fee6fcae4829ac3f043499f5fa38f812e731a0402d9143757cd055418f41855": row_sha256(
            CHECKPOINT_COLUMNS, dict.fromkeys(CHECKPOINT_COLUMNS, 1.5)
        ),
        "2ef4c0b2d5afce9bd3b387f7ca5501dbf3543ad9e4c1d1750f809ac034ba2f05": (
            streams.content_sha256(dict.fromkeys(streams.HASHED, "s"))
        ),
    }
    assert list(golden) == list(golden.values())


async def test_a_v1_log_keeps_verifying_after_the_v2_migration(tmp_path: Path) -> None:
    """A log written before chain v2: its v1 links verify as before, new records use v2."""
    from middleware.decision_log.migrations import (
        m001_initial,
        m002_search_index_without_positions,
    )
    from middleware.decision_log.privacy import TextPolicy
    from middleware.decision_log.records import encode
    from middleware.decision_log.writes import INSERT_CHILDREN, INSERT_FTS

    path = tmp_path / "v1.db"
    with raw_db(path) as db:  # what guardbot wrote before m003: decisions chained with v1
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
        for fn in (m001_initial, m002_search_index_without_positions):
            fn(db)
            db.execute("INSERT INTO _migrations VALUES (?, '2026-01-01T00:00:00Z')", (fn.__name__,))
        prev, ids = "0" * 64, []
        for seq in (1, 2, 3):
            enc = encode(make_decision(f"old {seq}"), TextPolicy())
            row, content = _legacy(enc)
            sha = link(prev, content)
            legacy = insert_sql("decisions", [*row, "seq", "prev_sha256", "sha256"])
            db.execute(legacy, {**row, "seq": seq, "prev_sha256": prev, "sha256": sha})
            db.execute(INSERT_FTS, (seq, row["text"], row["reply"]))  # as the writer did
            for insert, rows in zip(INSERT_CHILDREN, enc.parts, strict=True):
                db.executemany(insert.sql, map(insert.values, rows))
            prev = sha
            ids.append(enc.row["id"])
        db.execute(
            "INSERT INTO deliveries (decision_id, created_utc, status) VALUES (?, ?, 'sent')",
            (ids[0], "2026-01-01T00:00:01.000000Z"),
        )
        db.execute(
            "INSERT INTO settings VALUES ('global', 'best_of', '3', '2026-01-01T00:00:02.000000Z', "
            "'U1')"
        )
        db.execute(
            "INSERT INTO admin_actions VALUES ('a1', '2026-01-01T00:00:02.000000Z', 'U1', "
            "'console', 'console', '/admin set best_of 3', 'global', 'best_of', NULL, '3', 1, NULL)"
        )
    log = await DecisionLog.open(path)  # migrates
    await log.record(make_decision("new"))
    assert [(r.key, r.value) for r in await log.settings()] == [("best_of", 3)]
    await log.close()
    report = await verify(path)
    assert report.ok, report.message
    assert report.counts == {"decision": 4, "delivery": 1, "admin action": 1}
    with raw_db(path) as db:
        assert db.execute("SELECT version, from_seq FROM chain_versions").fetchall() == [
            (1, 1),
            (2, 4),
        ]
        drop_guards(db)
        db.execute("UPDATE decisions SET reply = 'edited' WHERE seq = 2")  # a v1 link
    report = await verify(path)
    assert (report.problem, report.bad_id, report.bad_seq) == ("changed", ids[1], 2)
