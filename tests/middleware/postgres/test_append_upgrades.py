"""The one-statement append across schema changes: older logs, and instances already running.

- A log migrated by the released guardbot holds m006's JSON ``guardbot_append``
  (the real SQL, kept as released in ``m006_as_released.sql``): opening it
  applies m007, and instances of both versions append to one chain, taking
  turns, and it verifies.
- A later migration adds a column to a table while an instance runs: the
  instance keeps appending (its function's row types are its own, so what
  asyncpg learned about them still holds), and the log verifies.
- Should one of those row types change anyway, the append learns it again
  and sends the group once more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from middleware.decision_log.postgres import PostgresLog, append, schema
from middleware.decision_log.postgres.url import PgTarget
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    DECISION_COLUMNS,
    DELIVERY_COLUMNS,
    LLM_CALL_COLUMNS,
    ROWS_COLUMN,
    VERDICT_COLUMNS,
    delivery_row,
    encode,
    row_sha256,
)
from middleware.decision_log.writes import Delivery, Job
from tests.middleware.postgres.test_append import verified
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer

RELEASED_M006 = (Path(__file__).parent / "m006_as_released.sql").read_text(encoding="utf-8")
PARTS = ("decisions", "verdicts", "candidates", "llm_calls", "deliveries")


def released_group(tag: str) -> tuple[list[Job], tuple[str, ...]]:
    """A decision and its delivery, and guardbot_append(jsonb x5)'s arguments for them
    as the released client built them (rows as JSON, each record with its content hash)."""
    decision = encode(make_decision(f"{tag} é🙂 '\"\\"), TextPolicy())
    delivery = Delivery(delivery_row(decision.row["id"], "sent", None, TextPolicy()))
    dumps = partial(json.dumps, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    args = (
        dumps([{**decision.row, "content_sha256": decision.content_sha256}]),
        dumps(decision.verdicts),
        dumps(decision.candidates),
        dumps(decision.llm_calls),
        dumps([{**delivery.row, "content_sha256": row_sha256(DELIVERY_COLUMNS, delivery.row)}]),
    )
    return [decision, delivery], args


async def released_append(conn: asyncpg.Connection, args: Sequence[str]) -> None:
    await conn.fetchrow("SELECT wait_s, held_s FROM guardbot_append($1, $2, $3, $4, $5)", *args)


async def record_both(log: PostgresLog, tag: str) -> None:
    decision = make_decision(tag)
    await log.record(decision)
    await log.record_delivery(decision.id, "sent", None)


async def test_a_log_of_the_released_m006_upgrades_and_both_versions_append(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await asyncio.to_thread(pg_server.create_database)
    old = await asyncpg.connect(url)
    try:
        with monkeypatch.context() as released:
            released.setattr(schema, "PG_MIGRATIONS", [
                *schema.PG_MIGRATIONS[:5], ("m006_pg_chain_append", RELEASED_M006)])  # fmt: skip
            assert (await schema.migrate(old))[-1] == "m006_pg_chain_append"
        await released_append(old, released_group("before the upgrade")[1])
        log = await PostgresLog.open_url(PgTarget(url))  # applies m007
        try:
            assert await schema.applied(old) == [name for name, _ in schema.PG_MIGRATIONS]
            for i in range(3):  # the two versions take turns on one chain
                await asyncio.gather(
                    released_append(old, released_group(f"released {i}")[1]),
                    record_both(log, f"upgraded {i}"),
                )
        finally:
            await log.close()
        overloads = await old.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname = 'guardbot_append'"
        )
    finally:
        await old.close()
    assert overloads == 2
    assert await verified(url) == 2 + 3 * 2 * 2


async def alter_under_a_running_log(
    pg_url: str, statement: str, *, then: int, undo: str | None = None
) -> int:
    """Record, run ``statement`` (``{table}`` filled in) for every part from another
    connection, record ``then`` more groups on the same log; the records verified
    (after ``undo``: verify names a column that no migration of this guardbot made)."""
    log = await PostgresLog.open_url(PgTarget(pg_url))
    try:
        await record_both(log, "before")
        await _each_part(pg_url, statement)
        for i in range(then):
            await record_both(log, f"after {i}")
    finally:
        await log.close()
    if undo is not None:
        await _each_part(pg_url, undo)
    return await verified(pg_url)


async def _each_part(pg_url: str, statement: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for table in PARTS:
            await conn.execute(statement.format(table=table, type=append.row_type(table)))
    finally:
        await conn.close()


async def test_a_column_added_to_every_table_leaves_a_running_instance_appending(
    pg_url: str,
) -> None:
    """What asyncpg learned of the function's row types still holds after the tables
    change (with the tables' own row types every append failed until a restart)."""
    added = "ALTER TABLE {table} ADD COLUMN later text NULL DEFAULT NULL"
    undo = "ALTER TABLE {table} DROP COLUMN later"
    assert await alter_under_a_running_log(pg_url, added, then=2, undo=undo) == 3 * 2


async def test_a_row_type_that_changed_anyway_is_learned_again(pg_url: str) -> None:
    added = "ALTER TYPE {type} ADD ATTRIBUTE later text"
    assert await alter_under_a_running_log(pg_url, added, then=1) == 4


def test_the_row_types_hold_every_column_the_records_have() -> None:
    """A column the records gain needs a new row type (and overload) in a new migration."""
    assert [append.columns(table) for table in PARTS] == [
        (*DECISION_COLUMNS, ROWS_COLUMN), VERDICT_COLUMNS, CANDIDATE_COLUMNS,
        LLM_CALL_COLUMNS, DELIVERY_COLUMNS,
    ]  # fmt: skip
