"""What `guardbot verify` sees besides the chain's links: the red team's findings F2-F8.

Each test writes a real log through the store (a real SQLite file), damages it
as someone with the file could, and runs the real verification.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.main import main
from middleware.decision_log import DecisionLog, integrity
from middleware.decision_log.chain import ChainReport
from middleware.decision_log.writer import connect
from middleware.types import StreamChunk, StreamRecord, utc_now
from tests.support.decision_log_support import drop_guards, make_decision, raw_db


async def _refused(log: DecisionLog, n: int) -> None:
    for i in range(n):
        await log.record_admin_action(
            actor=f"U-{i}", platform="slack", channel_id="C1", command="/guardbot disable pii",
            allowed=False, error="not an admin",
        )  # fmt: skip


async def test_verify_pages_records_after_the_last_decision(tmp_path: Path) -> None:
    """F2: a long run of admin actions after the last decision is read a page at a time."""
    path = tmp_path / "guardbot.db"
    log = await DecisionLog.open(path)
    try:
        for i in range(3):
            await log.record(make_decision(f"message {i}"))
        await _refused(log, 95)
        await log.record(make_decision("late"))
        await _refused(log, 40)
        report = await log.verify()
    finally:
        await log.close()
    assert report.ok and report.checked == 3 + 95 + 1 + 40
    db = await connect(path, read_only=True)
    try:
        versions = [(2, 1)]
        sizes = [len(page) async for page in integrity.pages(db, 0, versions, size=10)]
    finally:
        await db.close()
    # Each window ends before the 11th admin action it would hold: at most 10 records of
    # a kind per page, plus the decisions among them (#1-#3, #99).
    assert sizes == [13, *[10] * 8, 11, 10, 10, 10, 5]
    assert sum(sizes) == report.checked


async def test_parts_and_replay_runs_cannot_be_deleted(tmp_path: Path) -> None:
    """F8: a decision's verdicts, candidates and model calls go only with a prune;
    replay runs never (they are not on the chain)."""
    path = tmp_path / "guardbot.db"
    log = await DecisionLog.open(path)
    try:
        d = make_decision("kept")
        await log.record(d)
        await log.record_replay_run(actor="U-admin", config_fingerprint="f", decisions_count=1,
                                    changed_count=0)  # fmt: skip
    finally:
        await log.close()
    with raw_db(path) as db:
        for table in ("verdicts", "candidates", "llm_calls", "replay_runs"):
            count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert count > 0, table
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(f"DELETE FROM {table}")
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count
        # Review A 1: REPLACE deletes the old row without firing the delete trigger.
        (run_id,) = db.execute("SELECT id FROM replay_runs").fetchone()
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(
                "INSERT OR REPLACE INTO replay_runs SELECT id, created_utc, actor, "
                "config_fingerprint, 0, 0, duration_ms, filters_json, summary_json, "
                "changes_json FROM replay_runs WHERE id = ?",
                (run_id,),
            )
        assert db.execute("SELECT decisions_count FROM replay_runs").fetchall() == [(1,)]


async def _small_log(path: Path) -> list[str]:
    log = await DecisionLog.open(path)
    try:
        ids = []
        for text in ("hello there", "what is 2+2?"):
            d = make_decision(text, reply=f"reply to {text}")
            await log.record(d)
            ids.append(d.id)
        await _refused(log, 1)
    finally:
        await log.close()
    return ids


async def _verify(path: Path) -> ChainReport:
    log = await DecisionLog.open(path, read_only=True)
    try:
        return await log.verify()
    finally:
        await log.close()


SCHEMA_DAMAGE = [
    # (statement, problem, schema object named first, in the message)
    ("DROP INDEX stream_events_seq", "deleted", "stream_events_seq", "index stream_events_seq"),
    ("DROP TRIGGER verdicts_no_delete", "deleted", "verdicts_no_delete", "trigger verdicts_no"),
    ("ALTER TABLE decisions ADD COLUMN note TEXT", "inserted", "decisions.note",
     "column decisions.note was added"),
    ("DROP TABLE decisions_fts", "deleted", "decisions_fts", "table decisions_fts is missing"),
    ('CREATE TABLE "my notes" (x)', "inserted", "my notes", "table my notes was added"),
    ("DROP TRIGGER decisions_fts_delete; CREATE TRIGGER decisions_fts_delete AFTER DELETE ON "
     "decisions BEGIN SELECT 1; END", "changed", "decisions_fts_delete",
     "trigger decisions_fts_delete differs"),
]  # fmt: skip


@pytest.mark.parametrize("case", SCHEMA_DAMAGE, ids=[c[2] for c in SCHEMA_DAMAGE])
async def test_verify_names_schema_damage(tmp_path: Path, case: tuple[str, ...]) -> None:
    """F5: the chain verifies, yet a trigger, index, table or column is not what the
    migrations made; verify names it."""
    statements, problem, named, message = case
    path = tmp_path / "guardbot.db"
    await _small_log(path)
    with raw_db(path) as db:
        db.executescript(statements)
    report = await _verify(path)
    assert not report.ok
    assert (report.problem, report.bad_kind, report.bad_id) == (problem, "schema", named)
    assert message in report.message and report.counts == {"decision": 2, "admin action": 1}


def test_every_dropped_trigger_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F5 through the CLI: every append-only trigger dropped, nothing else touched."""
    path = tmp_path / "guardbot.db"
    asyncio.run(_small_log(path))
    with raw_db(path) as db:
        drop_guards(db)
    assert main(["verify", "--db", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["bad_kind"] == "schema" and "(and " in report["message"]


SEARCH_DAMAGE = {
    "entry deleted": "INSERT INTO decisions_fts (decisions_fts, rowid, text, reply) "
    "SELECT 'delete', seq, text, reply FROM decisions WHERE seq = 1",
    "entry forged": "INSERT INTO decisions_fts (rowid, text, reply) VALUES (2, 'bomb', '')",
}


@pytest.mark.parametrize("statement", SEARCH_DAMAGE.values(), ids=SEARCH_DAMAGE.keys())
async def test_verify_checks_the_search_index(tmp_path: Path, statement: str) -> None:
    """F4: an index entry removed or forged (no trigger dropped) fails verify, which
    leaves the file byte-identical (the check runs on a private copy)."""
    path = tmp_path / "guardbot.db"
    await _small_log(path)
    assert (await _verify(path)).ok
    with raw_db(path) as db:
        db.execute(statement)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.read_bytes()
    report = await _verify(path)
    assert (report.ok, report.problem, report.bad_kind) == (False, "changed", "search index")
    assert "rebuild" in report.message
    assert path.read_bytes() == before


async def _crashed_stream(path: Path) -> str:
    """A streamed reply whose two chunks were shown, then the process died before its
    decision was written; a later streamed reply that completed."""
    log = await DecisionLog.open(path)
    try:
        await log.record(make_decision("before"))
        for decision_id, texts in (("never-decided", ("Hello ", "there.")), ("later", ("Hi.",))):
            shown = 0
            for index, text in enumerate(texts):
                shown += len(text)
                chunk = StreamChunk(index=index, raw_chars=len(text), chars=len(text),
                                    shown_chars=shown, at_ms=1.0)  # fmt: skip
                await log.record_stream_chunk(decision_id, chunk, text)
        later = make_decision("later one", reply="Hi.").model_copy(update={"id": "later"})
        await log.record(later)
        await log.record_stream_end("later", StreamRecord(chunk_chars=8, context_chars=40,
                                    max_hold_ms=200.0, shown_chars=3))  # fmt: skip
    finally:
        await log.close()
    return "never-decided"


def test_verify_and_show_list_text_shown_but_never_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """F6: chunks on the chain with no decision are listed (a warning: verify still
    passes, as a crash mid-stream leaves them legitimately), and `show` says what was shown."""
    path = tmp_path / "guardbot.db"
    orphan = asyncio.run(_crashed_stream(path))
    assert main(["verify", "--db", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["undecided_streams"] == [
        {"decision_id": orphan, "chunks": 2, "shown_chars": 12, "last_seq": 3}
    ]
    assert main(["verify", "--db", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"warning: decision {orphan} (stream chunks up to #3): 2 chunk(s), 12" in out
    assert main(["show", "--db", str(path), orphan]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"no decision '{orphan}' in the log: 2 chunk(s), 12 character(s) were shown" in err


def test_verify_prints_the_head_and_checks_an_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """F7: the head is named by seq and kind; `--anchor SEQ:SHA256` shows a tail rewritten
    (the newest record removed and the head rolled back, which the chain alone cannot)."""
    path = tmp_path / "guardbot.db"
    ids = asyncio.run(_small_log(path))
    assert main(["verify", "--db", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["head_seq"], report["head_kind"]) == (3, "admin action")
    head = f"3:{report['head_sha256']}"
    assert main(["verify", "--db", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"head #3 (admin action {report['head_id']}) sha256 {report['head_sha256']}" in out
    assert f"--anchor {head}" in out
    assert main(["verify", "--db", str(path), "--anchor", head]) == 0
    assert "anchor #3: ok" in capsys.readouterr().out
    second = f"2:{'0' * 64}"  # a wrong note for decision #2
    assert main(["verify", "--db", str(path), "--anchor", second, "--json"]) == 1
    anchor = json.loads(capsys.readouterr().out)["anchor"]
    assert not anchor["ok"] and f"(decision {ids[1]}) has sha256" in anchor["message"]
    with raw_db(path) as db:  # the tail rewritten: #3 gone, the head rolled back to #2
        guard = "SELECT sql FROM sqlite_master WHERE name = 'admin_actions_no_delete'"
        (trigger,) = db.execute(guard).fetchone()
        db.execute("DROP TRIGGER admin_actions_no_delete")
        db.execute("DELETE FROM admin_actions")
        db.execute(trigger)  # put back: the schema is as the migrations made it
        db.execute("UPDATE chain_head SET seq = 2, sha256 = (SELECT sha256 FROM decisions "
                   "WHERE seq = 2)")  # fmt: skip
    assert main(["verify", "--db", str(path), "--anchor", head, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["chain_ok"] and report["head_seq"] == 2
    assert (
        report["anchor"]["message"]
        == "record #3 is not in the log (its head is #2): it was removed"
    )


def test_prune_says_what_it_removes_of_each_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """F3: a prune removes every kind of record in the range, admin actions included;
    the dry run and the prune say how many of each."""
    path = tmp_path / "guardbot.db"
    asyncio.run(_crashed_stream(path))  # a decision, 3 chunks, a decision, a stream end
    asyncio.run(_small_log(path))  # 2 decisions and a refused admin action
    expected = {"decision": 4, "stream chunk": 3, "stream end": 1, "admin action": 1}
    assert main(["prune", "--db", str(path), "--older-than", "0s", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "would remove 4 decision(s)" in out
    assert "1 admin action(s), 3 stream chunk(s), 1 stream end(s)" in out
    assert main(["prune", "--db", str(path), "--older-than", "0s", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["removed"], result["removed_by_kind"]) == (4, expected)
    assert result["chain_ok"] and result["remaining"] == 1  # the prune's checkpoint


@pytest.mark.parametrize(
    "statement",
    ["UPDATE chain_versions SET from_seq = 99 WHERE version = 2",
     "DELETE FROM chain_versions WHERE version = 2"],
    ids=["moved", "deleted"],
)  # fmt: skip
async def test_an_edited_format_table_is_named(tmp_path: Path, statement: str) -> None:
    """F9: records that verify in the other format name the format table, not themselves."""
    path = tmp_path / "guardbot.db"
    await _small_log(path)
    with raw_db(path) as db:
        drop_guards(db)
        db.execute(statement)
    report = await _verify(path)
    assert (report.problem, report.bad_kind, report.bad_id) == (
        "changed", "format table", "chain_versions",
    ), report.message  # fmt: skip


async def test_a_record_taken_off_the_chain_is_named_where_it_is(tmp_path: Path) -> None:
    """F9: an admin action whose seq was cleared leaves a gap; verify says it is still there."""
    path = tmp_path / "guardbot.db"
    await _small_log(path)
    with raw_db(path) as db:
        drop_guards(db)
        (admin_id,) = db.execute("SELECT id FROM admin_actions").fetchone()
        db.execute("UPDATE admin_actions SET seq = NULL")
    report = await _verify(path)
    assert report.problem == "deleted" and "#3" in report.message
    assert f"admin action {admin_id} is still in the log, off the chain" in report.message


async def test_an_anchor_in_the_pruned_part(tmp_path: Path) -> None:
    """F7 after a prune: the last record pruned is checked against its checkpoint's hash;
    an older one cannot be checked, and verify says so."""
    path = tmp_path / "guardbot.db"
    await _small_log(path)
    log = await DecisionLog.open(path)
    try:
        head = await log.verify()
        assert (await log.prune(utc_now()))[1].ok  # every record so far: through #3
        assert await log.check_anchor(3, head.head_sha256) is None
        assert "has sha256" in str(await log.check_anchor(3, "0" * 64))
        assert "was pruned" in str(await log.check_anchor(2, head.head_sha256))
    finally:
        await log.close()


@pytest.mark.parametrize("seq", [2**62 + 1, 2**63 - 1], ids=["2**62+1", "max"])
async def test_a_record_far_beyond_the_head_is_read(tmp_path: Path, seq: int) -> None:
    """Review A 3: the last page has no upper bound, so a forged delivery with a huge
    seq (which `show` would display) is read and named, not skipped."""
    path = tmp_path / "guardbot.db"
    ids = await _small_log(path)
    with raw_db(path) as db:
        db.execute(
            "INSERT INTO deliveries (decision_id, created_utc, status, error, seq, prev_sha256,"
            " sha256) VALUES (?, '2026-01-01T00:00:00Z', 'failed', 'forged', ?, 'x', 'y')",
            (ids[0], seq),
        )
    report = await _verify(path)
    assert (report.ok, report.bad_kind, report.bad_seq) == (False, "delivery", seq)
    assert "does not chain" in report.message


def test_no_room_for_the_search_index_copy_is_a_warning(tmp_path: Path) -> None:
    """Review A 2: a file-size limit stops the search index's copy; the chain's result
    stands and verify says what was not checked (not "the file is damaged")."""
    path = tmp_path / "guardbot.db"

    async def fill() -> None:
        log = await DecisionLog.open(path)
        try:
            for i in range(60):
                await log.record(make_decision(f"message {i} " + "words " * 200))
        finally:
            await log.close()

    asyncio.run(fill())
    limit = path.stat().st_size // 2  # the log's own -shm and -wal are far smaller

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code = "import sys; from bot.cli.main import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run(
        [sys.executable, "-c", code, "verify", "--db", str(path), "--json"],
        capture_output=True, text=True, preexec_fn=small_files, check=False,
        cwd=Path(__file__).parents[2], env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["counts"] == {"decision": 60}
    (warning,) = report["warnings"]
    assert warning.startswith("search index not checked: no copy of the log could be made")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("guardbot-verify-")]
