"""Tamper evidence through the real `guardbot verify`: one test per kind of tampering.

A real log is written through the store (decisions with verdicts and
candidates, deliveries, a setting change, a refused admin attempt, a
streamed reply), then edited as an attacker with the file would: triggers
dropped first. `verify --json` must exit 1 and name the first bad record by
kind and id (a verdict or candidate by its own kind and ``decision/position``).

The log, in chain order: #1 d0, #2 d1, #3 d2 (decisions), #4 delivery of d0,
#5 delivery of d1, #6 the setting change, #7 the refused attempt, #8 d3,
#9 delivery of d3, #10 d4, then d5's stream: #11 and #12 its chunks (stream
events 1 and 2, each committed before it was shown), #13 d5, #14 its stream's
end (stream event 3, the newest).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import main
from middleware.decision_log import DecisionLog
from middleware.decision_log.chain import link_v2
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.records import encode
from middleware.decision_log.writes import INSERT_CHILDREN, INSERT_DECISION
from middleware.types import StreamChunk, StreamRecord
from tests.support.decision_log_support import drop_guards, make_decision, raw_db


async def _write(path: Path) -> dict[str, str]:
    log = await DecisionLog.open(path)
    ids: dict[str, str] = {}
    try:
        for name in ("d0", "d1", "d2"):
            d = make_decision(f"message {name}", reply=f"reply {name}")
            await log.record(d)
            ids[name] = d.id
        await log.record_delivery(ids["d0"], "sent", None)
        await log.record_delivery(ids["d1"], "sent", None)
        await log.set_setting(
            "global", "guard.blocklist.enabled", True, actor="U-admin", platform="console",
            channel_id="console", command="/admin enable blocklist",
        )  # fmt: skip
        await log.record_admin_action(
            actor="U-mallory", platform="slack", channel_id="C1",
            command="/guardbot disable blocklist", allowed=False, error="not an admin",
        )  # fmt: skip
        d3 = make_decision("message d3")
        await log.record(d3)
        await log.record_delivery(d3.id, "sent", None)
        d4 = make_decision("message d4")
        await log.record(d4)
        d5 = make_decision("message d5", reply="First part. Second part.")
        shown = 0
        for index, text in enumerate(("First part. ", "Second part.")):
            shown += len(text)
            chunk = StreamChunk(
                index=index, raw_chars=len(text), chars=len(text), shown_chars=shown, at_ms=1.0
            )
            await log.record_stream_chunk(d5.id, chunk, text)
        await log.record(d5)
        await log.record_stream_end(
            d5.id,
            StreamRecord(chunk_chars=8, context_chars=40, max_hold_ms=200.0, shown_chars=shown),
        )
        ids |= {"d3": d3.id, "d4": d4.id, "d5": d5.id}
        ids["setting"] = (await log.admin_actions(limit=2))[1].id
        ids["refused"] = (await log.admin_actions(limit=2))[0].id
    finally:
        await log.close()
    return ids


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("tamper") / "g.db"
    ids = asyncio.run(_write(path))
    return path, ids


@pytest.fixture
def log(template: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path, ids = template
    copy = tmp_path / "g.db"
    copy.write_bytes(path.read_bytes())
    os.chmod(copy, 0o600)
    return copy, ids


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["verify", "--db", str(path), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def tamper(path: Path, *sql: str | tuple[str, tuple[Any, ...]]) -> None:
    with raw_db(path) as db:
        drop_guards(db)
        for statement in sql:
            text, params = statement if isinstance(statement, tuple) else (statement, ())
            assert db.execute(text, params).rowcount != 0, text


def test_the_untouched_log_verifies(
    log: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = verify(log[0], capsys)
    assert code == 0 and report["ok"], report
    assert report["counts"] == {
        "decision": 6, "delivery": 3, "admin action": 2, "stream chunk": 2, "stream end": 1,
    }  # fmt: skip


# (name, statements (ids -> SQL), problem, kind, id of the record named (key in ids, a
# part of a decision as "key/position", or literal))
Case = tuple[str, Callable[[dict[str, str]], list[Any]], str, str, str]


def expected_id(ids: dict[str, str], named: str) -> str:
    decision, _, part = named.partition("/")
    return f"{ids[decision]}/{part}" if part and decision in ids else ids.get(named, named)


CASES: list[Case] = [
    ("edit decision", lambda i: ["UPDATE decisions SET reply = 'never said' WHERE seq = 2"],
     "changed", "decision", "d1"),
    ("delete decision", lambda i: ["DELETE FROM decisions WHERE seq = 2"],
     "deleted", "decision", "d2"),
    ("edit verdict", lambda i: [("UPDATE verdicts SET outcome = 'block' WHERE decision_id = ? "
                                 "AND position = 0", (i["d1"],))], "changed", "verdict", "d1/0"),
    ("insert verdict", lambda i: [("INSERT INTO verdicts SELECT decision_id, 7, guard, stage, "
                                   "candidate_index, 'block', 1, category, score, confidence, "
                                   "reason, latency_ms, model, tokens_in, tokens_out, raw_output, "
                                   "members_json FROM verdicts WHERE decision_id = ? AND "
                                   "position = 0", (i["d1"],))], "inserted", "verdict", "d1/7"),
    ("insert orphan verdict", lambda i: [("INSERT INTO verdicts SELECT 'no-such-decision', 0, "
                                          "guard, stage, candidate_index, 'block', 1, category, "
                                          "score, confidence, reason, latency_ms, model, "
                                          "tokens_in, tokens_out, raw_output, members_json FROM "
                                          "verdicts WHERE decision_id = ? AND position = 0",
                                          (i["d1"],))],
     "inserted", "verdict", "no-such-decision/0"),
    ("delete verdict", lambda i: [("DELETE FROM verdicts WHERE decision_id = ? AND position = 1",
                                   (i["d1"],))], "deleted", "verdict", "d1/1"),
    ("edit verdict reason", lambda i: [("UPDATE verdicts SET reason = 'fine' WHERE decision_id = ? "
                                        "AND position = 1", (i["d3"],))],
     "changed", "verdict", "d3/1"),
    ("edit candidate", lambda i: [("UPDATE candidates SET chosen = 0 WHERE decision_id = ?",
                                   (i["d2"],))], "changed", "candidate", "d2/0"),
    ("edit candidate text", lambda i: [("UPDATE candidates SET text = 'never said' WHERE "
                                        "decision_id = ?", (i["d2"],))],
     "changed", "candidate", "d2/0"),
    ("insert candidate", lambda i: [("INSERT INTO candidates SELECT decision_id, 5, text, "
                                     "text_chars, text_sha256, model, temperature, latency_ms, "
                                     "tokens_in, tokens_out, score, 1, safe, error FROM candidates "
                                     "WHERE decision_id = ?", (i["d2"],))],
     "inserted", "candidate", "d2/5"),
    ("delete candidate", lambda i: [("DELETE FROM candidates WHERE decision_id = ?", (i["d2"],))],
     "deleted", "candidate", "d2/0"),
    ("edit delivery", lambda i: ["UPDATE deliveries SET status = 'failed' WHERE seq = 5"],
     "changed", "delivery", "2"),
    ("insert delivery", lambda i: [("INSERT INTO deliveries (decision_id, created_utc, status) "
                                    "VALUES (?, '2026-01-01T00:00:00.000000Z', 'sent')",
                                    (i["d4"],))], "inserted", "delivery", "4"),
    ("delete delivery", lambda i: ["DELETE FROM deliveries WHERE seq = 5"],
     "deleted", "admin action", "setting"),
    ("edit admin action", lambda i: ["UPDATE admin_actions SET allowed = 1, error = NULL "
                                     "WHERE seq = 7"], "changed", "admin action", "refused"),
    ("insert admin action", lambda i: ["INSERT INTO admin_actions (id, created_utc, actor, "
                                       "platform, channel_id, command, allowed) VALUES ('forged', "
                                       "'2026-01-01T00:00:00.000000Z', 'U-admin', 'slack', 'C1', "
                                       "'/guardbot status', 1)"],
     "inserted", "admin action", "forged"),
    ("delete admin action", lambda i: ["DELETE FROM admin_actions WHERE seq = 7"],
     "deleted", "decision", "d3"),
    ("edit setting", lambda i: ["UPDATE settings SET value_json = 'false'"],
     "changed", "setting", "global guard.blocklist.enabled"),
    ("insert setting", lambda i: ["INSERT INTO settings VALUES ('global', 'best_of', '1', "
                                  "'2026-01-01T00:00:00.000000Z', 'U-admin')"],
     "inserted", "setting", "global best_of"),
    ("delete setting", lambda i: ["DELETE FROM settings"],
     "deleted", "setting", "global guard.blocklist.enabled"),
    ("edit stream chunk", lambda i: ["UPDATE stream_events SET shown_chars = 0 WHERE seq = 12"],
     "changed", "stream chunk", "2"),
    ("edit stream chunk text", lambda i: ["UPDATE stream_events SET text = 'kys' WHERE seq = 11"],
     "changed", "stream chunk", "1"),
    ("insert stream chunk", lambda i: ["INSERT INTO stream_events (decision_id, created_utc, "
                                       "kind, chunk_index, text, text_chars, text_sha256, "
                                       "shown_chars, record_json, seq, prev_sha256, sha256) "
                                       "SELECT decision_id, created_utc, kind, 2, text, "
                                       "text_chars, text_sha256, shown_chars, record_json, 15, "
                                       "(SELECT sha256 FROM chain_head), sha256 "
                                       "FROM stream_events WHERE seq = 12"],
     "inserted", "stream chunk", "4"),
    ("delete stream chunk", lambda i: ["DELETE FROM stream_events WHERE seq = 11"],
     "deleted", "stream chunk", "2"),
    ("delete newest", lambda i: ["DELETE FROM stream_events WHERE seq = 14"],
     "deleted", "record", "#14"),
    ("reorder seq", lambda i: ["UPDATE decisions SET seq = -2 WHERE seq = 2",
                               "UPDATE decisions SET seq = 2 WHERE seq = 3",
                               "UPDATE decisions SET seq = 3 WHERE seq = -2"],
     "reordered", "decision", "d2"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_verify_names_the_first_bad_record(
    case: Case, log: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, statements, problem, kind, named = case
    path, ids = log
    tamper(path, *statements(ids))
    code, report = verify(path, capsys)
    assert code == 1 and not report["ok"]
    bad_id = expected_id(ids, named)
    assert (report["problem"], report["bad_kind"], report["bad_id"]) == (
        problem, kind, bad_id,
    ), report["message"]  # fmt: skip
    assert bad_id in report["message"]


def test_a_swap_blames_the_moved_record_not_the_one_before(
    log: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = log
    tamper(path, *CASES[-1][1](ids))
    _, report = verify(path, capsys)
    assert report["bad_seq"] == 2 and ids["d0"] not in report["message"].split(" is ")[0]


def test_a_decision_inserted_after_the_head_with_a_valid_link_is_named(
    log: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A perfect forgery appended to the end: only the recorded head tells."""
    path, _ = log
    forged = encode(make_decision("forged"), TextPolicy())
    with raw_db(path) as db:
        (head,) = db.execute("SELECT sha256 FROM chain_head").fetchone()
        row = {**forged.row, "seq": 15, "prev_sha256": head}
        linked = {**row, "sha256": link_v2("decision", 15, head, forged[4])}
        db.execute(INSERT_DECISION.sql, INSERT_DECISION.values(linked))
        for insert, rows in zip(INSERT_CHILDREN, forged.parts, strict=True):
            db.executemany(insert.sql, map(insert.values, rows))
    code, report = verify(path, capsys)
    assert code == 1 and report["problem"] == "inserted"
    assert (report["bad_kind"], report["bad_id"]) == ("decision", forged.row["id"])


async def test_a_forged_setting_is_not_applied(log: tuple[Path, dict[str, str]]) -> None:
    """The bot applies what the chained trail derives, never a row forged into the table."""
    path, _ = log
    tamper(
        path,
        "UPDATE settings SET value_json = 'false'",
        "INSERT INTO settings VALUES ('global', 'best_of', '1', '2026-01-01T00:00:00.000000Z', "
        "'U-admin')",
    )
    store = await DecisionLog.open(path, read_only=True)
    try:
        rows = await store.settings()
    finally:
        await store.close()
    assert [(r.scope, r.key, r.value) for r in rows] == [
        ("global", "guard.blocklist.enabled", True)
    ]


def test_the_triggers_stop_accidents(log: tuple[Path, dict[str, str]]) -> None:
    path, _ = log
    with raw_db(path) as db:
        for sql in (
            "DELETE FROM deliveries",
            "UPDATE deliveries SET status = 'none'",
            "DELETE FROM admin_actions",
            "UPDATE admin_actions SET allowed = 1",
            "DELETE FROM chain_head",
            "UPDATE chain_versions SET from_seq = 1",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only|never deleted"):
                db.execute(sql)
