"""SIGKILL in the middle of a stream of messages loses nothing that was posted.

A real subprocess (tests/support/decision_log_driver.py) answers a stream of
messages and prints each decision id once it is committed ("posted"). The
test kills it with SIGKILL while it is writing, then checks the file: SQLite's
integrity check passes, every posted id is in the log, the hash chain
verifies, and a new process carries on writing to the same file. The log is
written in that process (no helper process), so the kill stops its writes
mid-transaction.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from middleware.decision_log import DecisionLog
from tests.support.decision_log_support import make_decision, raw_db

DRIVER = Path(__file__).parents[1] / "support" / "decision_log_driver.py"
POSTED_BEFORE_KILL = 400


async def run_and_kill(db: Path) -> set[str]:
    """Posted ids; returns once the driver has ended."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DRIVER), str(db), "24",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    posted: set[str] = set()
    try:
        async with asyncio.timeout(60):
            first = (await proc.stdout.readline()).decode().split()
            assert first == ["ready"], f"driver failed: {(await proc.stderr.read())!r}"
            while len(posted) < POSTED_BEFORE_KILL:
                line = await proc.stdout.readline()
                if not line:
                    raise AssertionError(f"driver ended early: {(await proc.stderr.read())!r}")
                posted.add(line.decode().strip())
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: conversations are still writing
        rest, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # Lines already in the pipe were printed before the kill: those replies were posted too.
    posted.update(line for line in rest.decode().split() if line)
    return posted


async def test_sigkill_loses_no_posted_decision(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    posted = await run_and_kill(db)
    assert len(posted) >= POSTED_BEFORE_KILL
    with raw_db(db) as conn:  # a plain connection recovers the WAL, like any reader
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {r[0] for r in conn.execute("SELECT id FROM decisions")}
        orphans = conn.execute(
            "SELECT count(*) FROM deliveries WHERE decision_id NOT IN (SELECT id FROM decisions)"
        ).fetchone()[0]
    assert posted <= stored, f"{len(posted - stored)} posted decisions are missing"
    assert orphans == 0
    log = await DecisionLog.open(db)
    try:
        report = await log.verify()
        assert report.ok and report.counts["decision"] == len(stored)
        # History survived the crash too: the newest turns of a thread are there.
        turns = await log.history("crash", "C", "T0", max_turns=4, max_chars=10_000)
        assert turns and turns[-1].role == "assistant"
        await log.record(make_decision("after the crash"))
        assert (await log.verify()).ok
    finally:
        await log.close()


async def test_a_second_crash_on_a_recovered_file_is_fine(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    first = await run_and_kill(db)
    second = await run_and_kill(db)
    with raw_db(db) as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM decisions")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert first | second <= stored
    log = await DecisionLog.open(db, read_only=True)  # an audit straight after the crashes
    try:
        assert (await log.verify()).ok
    finally:
        await log.close()
