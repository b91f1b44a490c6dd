"""A real PostgreSQL server for the tests of this folder, and logs opened on it.

One throwaway cluster per test session (``tests/support/postgres_server.py``);
every test gets databases of its own, cloned from a migrated template, so tests
never see each other's rows. When no server can be started the tests are
skipped with the reason, unless ``GUARDBOT_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), where that is a failure: CI must run them.

``on_postgres`` runs a test written for the SQLite log against PostgreSQL: it
makes ``DecisionLog.open(path)`` open a database that stands for that path
(the same path, the same database, as a file would be), so the test itself is
unchanged.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.schema import migrate
from middleware.decision_log.postgres.url import PgTarget
from tests.support.postgres_server import PostgresServer, start_server

TEMPLATE = "guardbot_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = start_server()
    except (RuntimeError, OSError) as exc:
        if os.environ.get("GUARDBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"no PostgreSQL server could be started: {exc}")
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        yield server
    finally:
        server.remove()


async def new_database(server: PostgresServer) -> str:
    """A fresh, migrated database (a copy of the template: milliseconds, not a migration)."""
    admin = await asyncpg.connect(server.admin_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE):
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
            conn = await asyncpg.connect(server.url(TEMPLATE))
            try:
                await migrate(conn)
            finally:
                await conn.close()
        name = "t_" + uuid.uuid4().hex[:16]
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    return server.url(name)


@pytest.fixture
async def pg_url(pg_server: PostgresServer) -> str:
    return await new_database(pg_server)


@pytest.fixture
async def pg_log(pg_url: str) -> AsyncIterator[PostgresLog]:
    log = await PostgresLog.open_url(PgTarget(pg_url))
    yield log
    await log.close()


@pytest.fixture
def on_postgres(pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``DecisionLog.open(path)`` opens the PostgreSQL database standing for ``path``."""
    databases: dict[str, str] = {}

    async def open_on_postgres(
        cls: type[DecisionLog],
        path: str | Path,
        *,
        store_text: bool = True,
        redact_pii: bool = False,
        read_only: bool = False,
    ) -> DecisionLog:
        key = str(path)  # the tests name each log by one absolute path
        if key not in databases:
            if read_only:
                raise LogUnavailable(f"no decision log at {path}")
            databases[key] = await new_database(pg_server)
            await asyncio.to_thread(Path(key).touch)  # commands that look for the file find it
        options: dict[str, Any] = {"store_text": store_text, "redact_pii": redact_pii}
        return await PostgresLog.open_url(PgTarget(databases[key]), read_only=read_only, **options)

    monkeypatch.setattr(DecisionLog, "open", classmethod(open_on_postgres))
    return databases
