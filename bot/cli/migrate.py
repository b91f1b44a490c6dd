"""`guardbot migrate-log --to URL`: move an existing SQLite decision log into PostgreSQL.

A team that outgrows one instance keeps its history: every row of every log
table is copied as it is (ids, ``seq`` numbers, hashes and the chain head), so
the copy is the same hash chain and ``guardbot verify`` passes on it. The copy
is refused unless the source verifies first (a broken chain would be copied
as broken) and the target holds no log yet (two logs cannot be merged into
one chain). It runs as one transaction under the chain lock, so an error
leaves the target as empty as it was; event claims are not copied (they only
matter for a day). The append-only triggers of ``chain_versions`` are set
aside inside that transaction only, to write the source's chain versions over
the fresh ones the migrations put there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from bot.cli.common import log_path
from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.postgres import PostgresLog, is_postgres_url, target_from
from middleware.decision_log.postgres.connection import DRIVER_ERRORS, LOCK_SQL
from middleware.decision_log.postgres.store import connect
from middleware.decision_log.postgres.url import PgTarget
from middleware.decision_log.writer import connect as connect_sqlite

# Parents before children (foreign keys); each copied column by column as stored.
TABLES = (
    "decisions", "verdicts", "candidates", "llm_calls", "deliveries", "chain_checkpoints",
    "settings", "admin_actions", "replay_runs", "stream_events",
)  # fmt: skip
IDENTITIES = (("deliveries", "id"), ("chain_checkpoints", "id"), ("stream_events", "id"))
PAGE = 2000
NOT_EMPTY_SQL = (
    "SELECT (SELECT seq FROM chain_head WHERE id = 1) > 0 "
    "OR EXISTS (SELECT 1 FROM decisions) OR EXISTS (SELECT 1 FROM admin_actions) "
    "OR EXISTS (SELECT 1 FROM settings) OR EXISTS (SELECT 1 FROM replay_runs)"
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "migrate-log",
        help="copy a SQLite decision log into an empty PostgreSQL database (chain intact)",
        description="Copy every decision, verdict, delivery, setting and admin action of a "
        "SQLite log into PostgreSQL, with the same ids and hashes: `guardbot verify` passes "
        "on the copy. The target must hold no log yet; the password comes from --password-env.",
    )
    p.add_argument("--db", metavar="PATH", help="the SQLite log (default: [log] path)")
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")
    p.add_argument(
        "--password-env", default="PGPASSWORD", metavar="NAME",
        help="environment variable holding the target's password (default PGPASSWORD)",
    )  # fmt: skip
    p.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    if not is_postgres_url(args.to):
        print(f"error: --to must be a postgresql:// URL, not {args.to!r}", file=sys.stderr)
        return 2
    try:
        target = target_from(args.to, os.environ, args.password_env)
        copied = asyncio.run(migrate_log(log_path(args), target, progress=_progress))
    except (LogUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {copied} chained records to {target}; verify passes on the copy")
    return 0


def _progress(table: str, rows: int) -> None:
    print(f"  {table}: {rows:,} rows", file=sys.stderr, flush=True)


async def migrate_log(source: Path, target: PgTarget, *, progress: Any = None) -> int:
    """Copy the log at ``source`` into ``target``; the number of chained records.

    Raises LogUnavailable (one line) when the source does not verify, the target
    is not empty or cannot be reached, or the copy does not verify.
    """
    log = await DecisionLog.open(source, read_only=True)
    try:
        report = await log.verify()
    finally:
        await log.close()
    if not report.ok:
        raise LogUnavailable(f"{source} fails verification, not copying it: {report.message}")
    await (await PostgresLog.open_url(target)).close()  # creates the schema if need be
    db = await connect_sqlite(source, read_only=True)
    conn = await connect(target)
    try:
        await _copy(db, conn, target, progress)
    except DRIVER_ERRORS as exc:
        raise LogUnavailable(f"copying into {target} failed (nothing was kept): {exc}") from None
    finally:
        await conn.close()
        await db.close()
    copy = await PostgresLog.open_url(target, read_only=True)
    try:
        after = await copy.verify()
    finally:
        await copy.close()
    if not after.ok:
        raise LogUnavailable(f"the copy in {target} does not verify: {after.message}")
    return after.checked


async def _copy(
    db: aiosqlite.Connection, conn: asyncpg.Connection, target: PgTarget, progress: Any
) -> None:
    async with conn.transaction():
        await conn.execute(LOCK_SQL)  # no instance writes while the chain is laid down
        if await conn.fetchval(NOT_EMPTY_SQL):
            raise LogUnavailable(f"{target} already holds a decision log; copy into an empty one")
        for table in TABLES:
            rows = await _copy_table(db, conn, table, f"SELECT * FROM {table}")
            if table == "decisions":
                await _copy_table(
                    db, conn, "decisions_fts", "SELECT rowid, text, reply FROM decisions_fts"
                )
            if progress:
                progress(table, rows)
        for table, column in IDENTITIES:  # the next row numbered after the copied ones
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )
        [(seq, sha)] = await db.execute_fetchall("SELECT seq, sha256 FROM chain_head WHERE id = 1")
        await conn.execute("UPDATE chain_head SET seq = $1, sha256 = $2 WHERE id = 1", seq, sha)
        counter = await db.execute_fetchall(
            "SELECT seq FROM sqlite_sequence WHERE name = 'decisions'"
        )
        if counter:  # the last seq ever used: a pruned or removed tail stays visible
            await conn.execute(
                "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'decisions'", list(counter)[0][0]
            )
        await conn.execute("ALTER TABLE chain_versions DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM chain_versions")
        await _copy_table(db, conn, "chain_versions", "SELECT * FROM chain_versions")
        await conn.execute("ALTER TABLE chain_versions ENABLE TRIGGER USER")


async def _copy_table(
    db: aiosqlite.Connection, conn: asyncpg.Connection, table: str, select: str
) -> int:
    cursor = await db.execute(select)
    columns = [d[0] for d in cursor.description]
    names = ", ".join(columns)
    marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    copied = 0
    while rows := [tuple(r) for r in await cursor.fetchmany(PAGE)]:
        await conn.executemany(insert, rows)
        copied += len(rows)
    await cursor.close()
    return copied
