"""Tamper evidence on PostgreSQL: the SQLite tampering cases, run against a shared log.

The log of ``tests/middleware/test_tampering.py`` is written through the
PostgreSQL store (``on_postgres``), then edited as someone with the database
superuser password would: every trigger disabled first, then the very same
statements (placeholders translated). `guardbot verify --json --db URL` must
exit 1 and name the same first bad record as on SQLite.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.cli.main import main
from middleware.decision_log.postgres.connection import translate
from tests.middleware.test_tampering import CASES, Case, _write, expected_id


async def tamper(url: str, *sql: str | tuple[str, tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        # As the database's superuser: every trigger off, foreign keys' included.
        await conn.execute("SET session_replication_role = replica")
        for statement in sql:
            text, params = statement if isinstance(statement, tuple) else (statement, ())
            status = await conn.execute(translate(text).sql, *params)
            assert not status.endswith(" 0"), text  # the statement changed something
    finally:
        await conn.close()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_verify_names_the_first_bad_record_on_postgres(
    case: Case, on_postgres: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, statements, problem, kind, named = case
    path = tmp_path / "guardbot.db"
    ids = asyncio.run(_write(path))
    url = on_postgres[str(path)]
    asyncio.run(tamper(url, *statements(ids)))
    capsys.readouterr()
    code = main(["verify", "--db", url, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"]
    assert (report["problem"], report["bad_kind"], report["bad_id"]) == (
        problem, kind, expected_id(ids, named),
    ), report["message"]  # fmt: skip
