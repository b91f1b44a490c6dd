"""What the decision log refuses to write into, and what it stores of a hostile verdict.

A log path (or an export, a report) that names a device or a FIFO must not
have its mode changed: as root, a /dev/null made 0600 breaks every other
program on the machine. Another application's SQLite database must not be
switched to WAL and filled with guardbot's tables. A verdict's category comes
from a model's answer and is stored like any other text a model wrote.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.private_file import open_private
from tests.support.decision_log_support import make_decision

KEY = "sk-proj-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def mode(path: Path | os.DirEntry[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_private_file_is_created_or_tightened_but_a_fifo_keeps_its_mode(
    tmp_path: Path,
) -> None:
    new, old, fifo = tmp_path / "new", tmp_path / "old", tmp_path / "fifo"
    old.write_text("x")
    old.chmod(0o644)
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    for path in (new, old, fifo):  # O_RDWR: opening a FIFO so does not wait for a peer
        os.close(open_private(path, os.O_RDWR))
    assert (mode(new), mode(old), mode(fifo)) == (0o600, 0o600, 0o666)


async def test_a_log_path_that_is_not_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    with pytest.raises(LogUnavailable, match="it is not a file"):
        await DecisionLog.open(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and mode(fifo) == 0o666


async def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('Ada')")
    path.chmod(0o664)  # shared with a group: guardbot must not take that away
    before = path.read_bytes()
    with pytest.raises(LogUnavailable, match="a SQLite database of something else"):
        await DecisionLog.open(path)
    assert path.read_bytes() == before  # no WAL switch, no tables added
    assert mode(path) == 0o664  # refused before its mode was touched
    assert os.listdir(tmp_path) == ["crm.db"]  # no -wal, no -shm


async def test_a_file_that_is_no_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("meeting notes, not a database\n" * 100)
    path.chmod(0o644)
    with pytest.raises(LogUnavailable, match="not a SQLite database"):
        await DecisionLog.open(path)
    assert mode(path) == 0o644


async def test_an_empty_file_or_an_old_log_is_made_private(tmp_path: Path) -> None:
    """Ours (empty, or guardbot's own with a loose mode): owner-only before WAL, so the
    -wal and -shm SQLite creates with the file's mode are owner-only too."""
    empty = tmp_path / "empty.db"
    empty.touch()
    empty.chmod(0o644)
    log = await DecisionLog.open(empty)
    try:
        await log.record(make_decision())
        assert {mode(p) for p in os.scandir(tmp_path)} == {0o600}
    finally:
        await log.close()
    empty.chmod(0o640)
    log = await DecisionLog.open(empty)
    await log.close()
    assert mode(empty) == 0o600


async def test_an_empty_file_and_a_guardbot_log_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for records in (0, 1):  # made a log, then opened again as one (not refused as foreign)
        log = await DecisionLog.open(empty)
        try:
            report = await log.verify()
            assert report.ok and len(await log.query(limit=5)) == records
            await log.record(make_decision())
        finally:
            await log.close()


async def test_a_verdict_category_is_stored_masked_and_cleaned(tmp_path: Path) -> None:
    decision = make_decision()
    decision.verdicts[0].category = f"hate\ud800 {KEY}"
    log = await DecisionLog.open(tmp_path / "log.db")
    try:
        await log.record(decision)  # a lone surrogate used to fail the whole decision
    finally:
        await log.close()
    with sqlite3.connect(tmp_path / "log.db") as db:
        (category,) = db.execute("SELECT category FROM verdicts WHERE position = 0").fetchone()
    assert category == "hate\ufffd [SECRET:openai]"
