"""The one-statement append (postgres/append.py) stores exactly what the shared write stores.

The same jobs are committed into two fresh databases, once through
:func:`append.commit` and once through the shared :func:`writes.commit`:
every row of every table, hashes and head included, must be the same, and
both must verify. Groups holding anything but decisions and deliveries go
the shared way.
"""

from __future__ import annotations

import math
import sqlite3

import asyncpg
import pytest

from middleware.decision_log.postgres import PostgresLog, append
from middleware.decision_log.postgres.connection import SqlConnection, shared
from middleware.decision_log.postgres.url import PgTarget
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.records import EncodedDecision, encode
from middleware.decision_log.writes import Delivery, Job, commit, insert_admin
from tests.middleware.postgres.conftest import new_database
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer

TABLES = {
    "decisions": "seq", "decisions_fts": "rowid", "verdicts": "decision_id, position",
    "candidates": "decision_id, candidate_index", "llm_calls": "decision_id, position",
    "deliveries": "id", "chain_head": "id", "sqlite_sequence": "name",
}  # fmt: skip


def jobs() -> list[Job]:
    encoded = [encode(make_decision(f"message {i}"), TextPolicy()) for i in range(3)]
    delivered = [
        Delivery(
            {
                "decision_id": e.row["id"],
                "created_utc": "2026-01-01T00:00:00.000000Z",
                "status": status,
                "error": None,
            }
        )  # fmt: skip
        for e, status in zip(encoded, ("sent", "failed"), strict=False)
    ]
    return [encoded[0], delivered[0], encoded[1], encoded[2], delivered[1]]


async def dump(url: str) -> dict[str, list[asyncpg.Record]]:
    conn = await asyncpg.connect(url)
    try:
        return {t: await conn.fetch(f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLES.items()}
    finally:
        await conn.close()


async def both_ways(
    server: PostgresServer, group: list[Job], *, verify: bool = True
) -> dict[str, list[asyncpg.Record]]:
    """Commit ``group`` through the one statement and the shared write into two fresh
    databases; assert every table is the same and (unless not ``verify``) both verify;
    the rows."""
    fast_url, slow_url = await new_database(server), await new_database(server)
    prepared = append.prepare(group)
    assert prepared is not None
    fast = SqlConnection(await asyncpg.connect(fast_url))
    slow = SqlConnection(await asyncpg.connect(slow_url))
    try:
        assert await append.commit(fast, prepared) == [None] * len(group)
        assert await commit(shared(slow), group) == [None] * len(group)
    finally:
        await fast.close()
        await slow.close()
    assert fast.lock_stats.waits == 1 and fast.lock_stats.held_s > 0
    fast_rows, slow_rows = await dump(fast_url), await dump(slow_url)
    # repr: exact floats, so -0.0 is not 0.0, and NaN is NaN (NaN == NaN is false)
    assert repr(fast_rows) == repr(slow_rows)
    for url in (fast_url, slow_url) if verify else ():
        assert await verified(url) == len(group)
    return fast_rows


async def verified(url: str) -> int:
    log = await PostgresLog.open_url(PgTarget(url), read_only=True)
    try:
        report = await log.verify()
    finally:
        await log.close()
    assert report.ok, report.message
    return report.checked


async def test_one_statement_and_the_shared_write_store_the_same(
    pg_server: PostgresServer,
) -> None:
    rows = await both_ways(pg_server, jobs())
    assert len(rows["decisions"]) == 3 and len(rows["deliveries"]) == 2
    assert rows["chain_head"][0]["seq"] == 5


def odd(text: str = "hello", reply: str = "hi", *, score: float = 0.01, **timings: float) -> Job:
    """A decision with this text, reply, judge score and timings, encoded as the writer does."""
    decision = make_decision(text, reply=reply, tokens=(2**31 - 1, 2**31 - 1))
    judge = decision.verdicts[0].model_copy(update={"score": score, "confidence": score})
    return encode(
        decision.model_copy(
            update={
                "verdicts": [judge, *decision.verdicts[1:]],
                "timings": decision.timings.model_copy(update=timings),
                "cost_usd": 0.1 + 0.2,
            }
        ),
        TextPolicy(),
    )


ODD = {
    "non-ASCII": odd("héllo wörld 中文 🙂👩‍👩‍👧 \u2028 \u2029 \u00a0 \ufeff", "ça va 🙂 \u2028"),
    "quotes and backslashes": odd("say \"hi\" \\ \\n \\u0000 'x' `y` $1 %s {}", '\\"}]\\'),
    "1 MB": odd("x" * 1_000_000 + "🙂", "é" * 500_000),
    "text that reads -0.0": odd("-0.0 and 1e-0.0", "-0.0"),  # a number only in text: fast
    "smallest subnormal": odd(score=5e-324, total_ms=5e-324),
    "largest float": odd(score=1.7976931348623157e308, total_ms=1.7976931348623157e308),
    "0.1 + 0.2": odd(score=0.1 + 0.2, total_ms=0.1 + 0.2),
    "long digits": odd(score=2.0**-1074 * 3, total_ms=123456789.12345679, saved_ms=1e16),
    "negative": odd(score=-1e-9, total_ms=-5e-324, saved_ms=-1.7976931348623157e308),
}


@pytest.mark.parametrize("job", ODD.values(), ids=ODD.keys())
async def test_odd_values_store_the_same_both_ways(pg_server: PostgresServer, job: Job) -> None:
    assert isinstance(job, EncodedDecision)
    delivery = Delivery({"decision_id": job.row["id"], "created_utc": job.row["created_utc"],
                         "status": "failed", "error": job.row["text"][:2000]})  # fmt: skip
    rows = await both_ways(pg_server, [job, delivery])
    stored = rows["decisions"][0]
    for column in ("text", "reply", "total_ms", "saved_ms", "cost_usd", "tokens_in"):
        assert stored[column] == job.row[column], column
    assert rows["verdicts"][0]["score"] == job.verdicts[0]["score"]


async def test_negative_zero_is_stored_as_zero_and_verifies(pg_url: str) -> None:
    """Encoding makes -0.0 0.0 before hashing (as SQLite needs); the log stores 0.0 and
    verifies. (A moderation score rounded to 4 places is -0.0 for a tiny negative.)"""
    zero = make_decision("rounded")
    judge = zero.verdicts[0].model_copy(update={"score": round(-1e-9, 4)})
    log = await PostgresLog.open_url(PgTarget(pg_url))
    try:
        await log.record(zero.model_copy(update={"verdicts": [judge, *zero.verdicts[1:]]}))
    finally:
        await log.close()
    assert await verified(pg_url) == 1
    conn = await asyncpg.connect(pg_url)
    try:
        stored = await conn.fetchval("SELECT score FROM verdicts WHERE position = 0")
    finally:
        await conn.close()
    assert stored == 0.0


@pytest.mark.parametrize("value", [-0.0, math.nan, math.inf], ids=["-0.0", "NaN", "inf"])
async def test_floats_json_could_not_carry_are_stored_as_the_shared_write_stores_them(
    pg_server: PostgresServer, value: float
) -> None:
    """encode() never makes them, but a row made otherwise is bound, not turned into
    JSON: the one statement stores what the shared write stores (the first version
    sent JSON, where -0.0 became 0 and NaN could not go at all)."""
    made_otherwise = odd()
    assert isinstance(made_otherwise, EncodedDecision)
    made_otherwise.row["total_ms"] = value
    made_otherwise.verdicts[0]["score"] = value
    rows = await both_ways(pg_server, [*jobs(), made_otherwise], verify=False)
    stored = rows["decisions"][-1]["total_ms"]
    assert math.copysign(1.0, stored) == math.copysign(1.0, value)
    assert stored == value or (math.isnan(stored) and math.isnan(value))


def test_groups_it_cannot_carry_go_the_shared_way() -> None:
    admin = insert_admin({"id": "a1", "created_utc": "2026-01-01T00:00:00.000000Z",
                          "actor": "ops", "platform": "console", "channel_id": "c",
                          "command": "show", "scope": None, "key": None, "old_json": None,
                          "new_json": None, "allowed": 1, "error": None})  # fmt: skip
    assert append.prepare([*jobs(), admin]) is None  # an admin action: the shared write
    assert append.prepare(jobs()) is not None


async def test_a_value_of_the_wrong_type_fails_the_group_as_a_constraint(pg_url: str) -> None:
    """Refused by the driver before anything is sent, as on the shared way: the writer
    then retries each job alone, so only the bad one fails."""
    bad = encode(make_decision("typed"), TextPolicy())
    bad.row["tokens_in"] = "many"
    conn = SqlConnection(await asyncpg.connect(pg_url))
    try:
        prepared = append.prepare([*jobs(), bad])
        assert prepared is not None
        with pytest.raises(sqlite3.IntegrityError):
            await append.commit(conn, prepared)
        prepared = append.prepare(jobs())
        assert prepared is not None
        await append.commit(conn, prepared)  # the connection is still good
    finally:
        await conn.close()
    assert (await dump(pg_url))["chain_head"][0]["seq"] == 5


async def test_a_group_of_deliveries_only_and_a_decision_alone(pg_server: PostgresServer) -> None:
    """The parts a group lacks cost no statement; the head still moves as on the shared way."""
    decision = encode(make_decision("alone", reply="r"), TextPolicy())
    delivery = Delivery({"decision_id": decision.row["id"], "created_utc": decision.row[
        "created_utc"], "status": "sent", "error": None})  # fmt: skip
    rows = await both_ways(pg_server, [decision])
    assert rows["chain_head"][0]["seq"] == 1 and not rows["deliveries"]
    fast_url, slow_url = await new_database(pg_server), await new_database(pg_server)
    for url, way in ((fast_url, "fast"), (slow_url, "slow")):
        conn = SqlConnection(await asyncpg.connect(url))
        try:
            for group in ([decision], [delivery]):
                if way == "fast":
                    prepared = append.prepare(group)
                    assert prepared is not None
                    await append.commit(conn, prepared)
                else:
                    await commit(shared(conn), group)
        finally:
            await conn.close()
    assert repr(await dump(fast_url)) == repr(await dump(slow_url))
    assert await verified(fast_url) == 2


async def test_a_bad_group_writes_nothing_and_foreign_keys_still_hold(pg_url: str) -> None:
    group = jobs()
    orphan = encode(make_decision("orphan"), TextPolicy())
    orphan.verdicts[0]["decision_id"] = "no-such-decision"  # checked at COMMIT, still checked
    prepared = append.prepare([*group, orphan])
    assert prepared is not None
    conn = SqlConnection(await asyncpg.connect(pg_url))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="verdicts_decision_id_fkey"):
            await append.commit(conn, prepared)
    finally:
        await conn.close()
    rows = await dump(pg_url)
    assert rows["chain_head"][0]["seq"] == 0
    assert not any(rows[t] for t in ("decisions", "verdicts", "candidates", "deliveries"))
