"""Migrations, the exact schema, and how the database file is opened."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.migrations import MIGRATIONS, migrate
from tests.support.decision_log_support import make_decision, raw_db

# (name, declared type, NOT NULL, position in the primary key) for every column.
EXPECTED: dict[str, list[tuple[str, str, int, int]]] = {
    "_migrations": [("name", "TEXT", 1, 1), ("applied_utc", "TEXT", 1, 0)],
    "admin_actions": [
        ("id", "TEXT", 1, 1), ("created_utc", "TEXT", 1, 0), ("actor", "TEXT", 1, 0),
        ("platform", "TEXT", 1, 0), ("channel_id", "TEXT", 1, 0), ("command", "TEXT", 1, 0),
        ("scope", "TEXT", 0, 0), ("key", "TEXT", 0, 0), ("old_json", "TEXT", 0, 0),
        ("new_json", "TEXT", 0, 0), ("allowed", "INTEGER", 1, 0), ("error", "TEXT", 0, 0),
        ("seq", "INTEGER", 0, 0), ("prev_sha256", "TEXT", 0, 0), ("sha256", "TEXT", 0, 0),
        ("changes_setting", "INTEGER", 1, 0),
    ],
    "candidates": [
        ("decision_id", "TEXT", 1, 1), ("candidate_index", "INTEGER", 1, 2),
        ("text", "TEXT", 0, 0), ("text_chars", "INTEGER", 1, 0), ("text_sha256", "TEXT", 1, 0),
        ("model", "TEXT", 1, 0), ("temperature", "REAL", 0, 0), ("latency_ms", "REAL", 1, 0),
        ("tokens_in", "INTEGER", 1, 0), ("tokens_out", "INTEGER", 1, 0), ("score", "REAL", 0, 0),
        ("chosen", "INTEGER", 1, 0), ("safe", "INTEGER", 0, 0), ("error", "TEXT", 0, 0),
    ],
    "chain_checkpoints": [
        ("id", "INTEGER", 0, 1), ("created_utc", "TEXT", 1, 0), ("cutoff_utc", "TEXT", 1, 0),
        ("through_seq", "INTEGER", 1, 0), ("through_id", "TEXT", 1, 0),
        ("through_sha256", "TEXT", 1, 0), ("pruned_count", "INTEGER", 1, 0),
        ("seq", "INTEGER", 0, 0), ("prev_sha256", "TEXT", 0, 0), ("sha256", "TEXT", 0, 0),
        ("settings_json", "TEXT", 0, 0),
    ],
    "chain_head": [("id", "INTEGER", 0, 1), ("seq", "INTEGER", 1, 0), ("sha256", "TEXT", 1, 0)],
    "chain_versions": [
        ("version", "INTEGER", 0, 1), ("from_seq", "INTEGER", 1, 0), ("applied_utc", "TEXT", 1, 0),
    ],
    "decisions": [
        ("seq", "INTEGER", 0, 1), ("id", "TEXT", 1, 0), ("created_utc", "TEXT", 1, 0),
        ("received_utc", "TEXT", 1, 0), ("platform", "TEXT", 1, 0), ("channel_id", "TEXT", 1, 0),
        ("thread_id", "TEXT", 1, 0), ("user_id", "TEXT", 1, 0), ("user_name", "TEXT", 1, 0),
        ("message_id", "TEXT", 1, 0), ("history_turns", "INTEGER", 1, 0), ("text", "TEXT", 0, 0),
        ("text_chars", "INTEGER", 1, 0), ("text_sha256", "TEXT", 1, 0), ("action", "TEXT", 1, 0),
        ("reply", "TEXT", 0, 0), ("reply_chars", "INTEGER", 1, 0), ("reply_sha256", "TEXT", 1, 0),
        ("blocked_by", "TEXT", 0, 0), ("error", "TEXT", 0, 0), ("selection_method", "TEXT", 0, 0),
        ("selection_json", "TEXT", 0, 0), ("total_ms", "REAL", 1, 0),
        ("input_guards_ms", "REAL", 1, 0), ("generation_ms", "REAL", 1, 0),
        ("output_guards_ms", "REAL", 1, 0), ("selection_ms", "REAL", 1, 0),
        ("saved_ms", "REAL", 1, 0), ("tokens_in", "INTEGER", 1, 0),
        ("tokens_out", "INTEGER", 1, 0), ("cost_usd", "REAL", 1, 0),
        ("config_fingerprint", "TEXT", 1, 0), ("prev_sha256", "TEXT", 1, 0),
        ("sha256", "TEXT", 1, 0), ("rows_sha256_json", "TEXT", 0, 0),
    ],
    "decisions_fts": [("text", "", 0, 0), ("reply", "", 0, 0)],
    "deliveries": [
        ("id", "INTEGER", 0, 1), ("decision_id", "TEXT", 1, 0), ("created_utc", "TEXT", 1, 0),
        ("status", "TEXT", 1, 0), ("error", "TEXT", 0, 0), ("seq", "INTEGER", 0, 0),
        ("prev_sha256", "TEXT", 0, 0), ("sha256", "TEXT", 0, 0),
    ],
    "llm_calls": [
        ("decision_id", "TEXT", 1, 1), ("position", "INTEGER", 1, 2), ("purpose", "TEXT", 1, 0),
        ("model", "TEXT", 1, 0), ("tokens_in", "INTEGER", 1, 0), ("tokens_out", "INTEGER", 1, 0),
        ("latency_ms", "REAL", 1, 0), ("error", "TEXT", 0, 0),
    ],
    "replay_runs": [
        ("id", "TEXT", 1, 1), ("created_utc", "TEXT", 1, 0), ("actor", "TEXT", 1, 0),
        ("config_fingerprint", "TEXT", 1, 0), ("decisions_count", "INTEGER", 1, 0),
        ("changed_count", "INTEGER", 1, 0), ("duration_ms", "REAL", 1, 0),
        ("filters_json", "TEXT", 1, 0), ("summary_json", "TEXT", 1, 0),
        ("changes_json", "TEXT", 1, 0),
    ],
    "settings": [
        ("scope", "TEXT", 1, 1), ("key", "TEXT", 1, 2), ("value_json", "TEXT", 1, 0),
        ("updated_utc", "TEXT", 1, 0), ("actor", "TEXT", 1, 0),
    ],
    "verdicts": [
        ("decision_id", "TEXT", 1, 1), ("position", "INTEGER", 1, 2), ("guard", "TEXT", 1, 0),
        ("stage", "TEXT", 1, 0), ("candidate_index", "INTEGER", 0, 0), ("outcome", "TEXT", 1, 0),
        ("blocking", "INTEGER", 1, 0), ("category", "TEXT", 1, 0), ("score", "REAL", 0, 0),
        ("confidence", "REAL", 0, 0), ("reason", "TEXT", 1, 0), ("latency_ms", "REAL", 1, 0),
        ("model", "TEXT", 0, 0), ("tokens_in", "INTEGER", 1, 0), ("tokens_out", "INTEGER", 1, 0),
        ("raw_output", "TEXT", 0, 0), ("members_json", "TEXT", 0, 0),
    ],
    "event_claims": [
        ("platform", "TEXT", 1, 1), ("event_id", "TEXT", 1, 2), ("claimed_utc", "TEXT", 1, 0),
    ],
    "stream_events": [
        ("id", "INTEGER", 0, 1), ("decision_id", "TEXT", 1, 0), ("created_utc", "TEXT", 1, 0),
        ("kind", "TEXT", 1, 0), ("chunk_index", "INTEGER", 0, 0), ("text", "TEXT", 0, 0),
        ("text_chars", "INTEGER", 1, 0), ("text_sha256", "TEXT", 1, 0),
        ("shown_chars", "INTEGER", 1, 0), ("record_json", "TEXT", 1, 0), ("seq", "INTEGER", 1, 0),
        ("prev_sha256", "TEXT", 1, 0), ("sha256", "TEXT", 1, 0),
    ],
}  # fmt: skip
INDEXES = {
    "decisions_channel", "decisions_created", "decisions_thread", "decisions_user",
    "deliveries_decision", "stream_events_decision", "deliveries_seq", "admin_actions_seq",
    "chain_checkpoints_seq", "admin_actions_setting", "event_claims_claimed", "stream_events_seq",
}  # fmt: skip
TRIGGERS = {
    "admin_actions_no_update", "candidates_no_update", "chain_checkpoints_no_update",
    "decisions_fts_delete", "decisions_no_delete", "decisions_no_update",
    "deliveries_no_update", "llm_calls_no_update", "replay_runs_no_update",
    "verdicts_no_update", "stream_events_no_update", "stream_events_no_delete",
    "deliveries_no_delete", "admin_actions_no_delete", "chain_checkpoints_no_delete",
    "chain_versions_no_update", "chain_versions_no_delete", "chain_head_no_delete",
    "deliveries_need_a_decision", "verdicts_no_delete", "candidates_no_delete",
    "llm_calls_no_delete", "replay_runs_no_delete", "replay_runs_no_replace",
}  # fmt: skip


async def test_a_blank_database_migrates_to_exactly_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    log = await DecisionLog.open(path)
    await log.close()
    with raw_db(path) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name NOT LIKE 'decisions_fts_%' ORDER BY name"
            )
        ]
        assert tables == sorted(EXPECTED)
        for table, columns in EXPECTED.items():
            found = [(c[1], c[2], c[3], c[5]) for c in db.execute(f"PRAGMA table_info({table})")]
            assert found == columns, table
        named = dict.fromkeys(("index", "trigger"), set[str]())
        for kind, name in db.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger') "
            "AND name NOT LIKE 'sqlite_%'"
        ):
            named[kind] = named[kind] | {name}
        assert named == {"index": INDEXES, "trigger": TRIGGERS}
        assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [
            "m001_initial",
            "m002_search_index_without_positions",
            "m003_chain_v2",
            "m004_stream_events",
            "m005_event_claims",
            "m008_append_only_parts",
            "m009_no_truncate_or_replace",
        ]
        fts = db.execute("SELECT sql FROM sqlite_master WHERE name = 'decisions_fts'").fetchone()
        assert "detail = none" in fts[0]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # Every table except the search index is STRICT (types are enforced).
        strict = {r[1] for r in db.execute("PRAGMA table_list") if r[5]}
        assert strict == set(EXPECTED) - {"decisions_fts"}


async def test_migrations_run_once_and_are_named_in_order(tmp_path: Path) -> None:
    names = [name for name, _ in MIGRATIONS]
    assert names == sorted(names) and names[0] == "m001_initial"
    path = tmp_path / "g.db"
    for _ in range(3):  # every open checks; nothing is applied twice
        log = await DecisionLog.open(path)
        await log.record(make_decision())
        await log.close()
    with raw_db(path) as db:
        assert db.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT count(*) FROM decisions").fetchone()[0] == 3
    with raw_db(path) as db:
        assert migrate(db) == []


async def test_a_database_from_a_newer_guardbot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    await (await DecisionLog.open(path)).close()
    with raw_db(path) as db:
        db.execute("INSERT INTO _migrations VALUES ('m999_future', '2100-01-01T00:00:00Z')")
    with pytest.raises(LogUnavailable, match="newer guardbot.*m999_future"):
        await DecisionLog.open(path)
    with pytest.raises(LogUnavailable, match="newer guardbot"):
        await DecisionLog.open(path, read_only=True)


async def test_a_failed_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "clash.db"
    with raw_db(path) as db:  # a table in the way makes m001 fail half-way
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
        db.execute("CREATE TABLE deliveries (x)")  # (without _migrations: not a guardbot log)
    with pytest.raises(LogUnavailable, match="cannot prepare"):
        await DecisionLog.open(path)
    with raw_db(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"deliveries", "_migrations"}  # decisions etc. were rolled back


async def test_the_file_is_owner_only_and_a_missing_folder_is_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sub" / "dir" / "g.db"
    with pytest.raises(LogUnavailable, match="folder .*sub/dir does not exist"):
        await DecisionLog.open(path)
    assert not (tmp_path / "sub").exists()  # a typo in [log] path is not a new folder
    path.parent.mkdir(parents=True)
    log = await DecisionLog.open(path)
    await log.record(make_decision())
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
        assert mode == 0o600, (suffix, oct(mode))
    await log.close()
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    os.chmod(loose, 0o644)
    await (await DecisionLog.open(loose)).close()
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o600  # tightened on open


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    try:
        with pytest.raises(ValueError, match="refused"):
            await log.record_delivery("no-such-decision", "sent", None)
        await log.record(d := make_decision())
        await log.record_delivery(d.id, "sent", None)  # the writer is fine afterwards
    finally:
        await log.close()


async def test_read_only_opens_never_create_or_write(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(LogUnavailable, match="no decision log"):
        await DecisionLog.open(missing, read_only=True)
    assert not missing.exists()
    other = tmp_path / "other.db"
    with raw_db(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(LogUnavailable, match="not a guardbot decision log"):
        await DecisionLog.open(other, read_only=True)
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 100)
    with pytest.raises(LogUnavailable):
        await DecisionLog.open(text)
    path = tmp_path / "g.db"
    await (await DecisionLog.open(path)).close()
    reader = await DecisionLog.open(path, read_only=True)
    try:
        with pytest.raises(LogUnavailable, match="read-only"):
            await reader.record(make_decision())
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await reader._reader.execute("DELETE FROM settings")  # the connection itself is ro
    finally:
        await reader.close()
