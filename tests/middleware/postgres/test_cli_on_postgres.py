"""`prune`, `export` and `replay` against a PostgreSQL log (``--db postgresql://…``).

The commands reach the log through ``bot.cli.common.open_log`` only, so a URL
works wherever a file does: prune removes the old decisions and leaves a chain
that verifies, export writes every decision, replay re-screens them and
records its run in the shared log.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.main import main
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.url import PgTarget
from middleware.types import utc_now
from tests.support.decision_log_support import make_decision


async def fill(url: str) -> None:
    log = await PostgresLog.open_url(PgTarget(url))
    try:
        for n in range(3):
            await log.record(make_decision(f"old {n}", created=utc_now() - timedelta(days=90)))
        for n in range(2):
            await log.record(make_decision(f"new {n}"))
    finally:
        await log.close()


async def replay_runs(url: str) -> int:
    log = await PostgresLog.open_url(PgTarget(url), read_only=True)
    try:
        return len(await log.replay_runs())
    finally:
        await log.close()


def test_prune_export_and_replay_work_on_postgres(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(fill(pg_url))
    assert main(["export", "--db", pg_url]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(exported) == 5
    assert main(["prune", "--older-than", "30d", "--db", pg_url]) == 0
    assert "3" in capsys.readouterr().out
    assert main(["verify", "--db", pg_url]) == 0
    assert main(["export", "--db", pg_url, "-o", str(tmp_path / "out.jsonl")]) == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    texts = sorted(json.loads(r)["text"] for r in lines)
    assert texts == ["new 0", "new 1"]
    capsys.readouterr()
    assert main(["replay", "--db", pg_url, "--no-progress", "--json"]) == 0
    out = capsys.readouterr()
    assert "PostgreSQL" in out.err  # the log it read, shown without credentials
    assert asyncio.run(replay_runs(pg_url)) == 1
