"""The hot path of the shared chain: a group of decisions and deliveries in one statement.

Several instances append to one chain, so while one holds the chain lock
every other waits; what matters is how long it is held. The shared write
(:func:`..writes.commit`) runs one statement per table, and on PostgreSQL
each is a round trip between two processes: from taking the lock to COMMIT,
the head read, decisions, the search index, verdicts, candidates, model
calls, deliveries, the head update and COMMIT, eight or nine of them. For a
group that holds only decisions and deliveries (what every message writes)
this module does the same writes in three:

- before the lock: every row turned into JSON (a decision's row without its
  place in the chain, which only the head can give);
- BEGIN and the lock, sent together;
- under the lock: the head read; then one statement that inserts every
  table from JSON arrays (``jsonb_populate_recordset``, columns by name) and
  moves the head; then COMMIT. The chain links are computed in between, in
  the order the shared write uses (decisions, then deliveries).

The rows, hashes and chain are the shared write's, so ``verify`` cannot tell
the two apart (a test checks it). Anything else (settings, admin actions,
prune) goes the shared way. Floats that JSON cannot carry (NaN, infinity)
make :func:`prepare` decline, and that group goes the shared way too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from middleware.decision_log.chain import Chainer
from middleware.decision_log.postgres.connection import (
    BEGIN_LOCKED,
    DRIVER_ERRORS,
    SqlConnection,
    as_sqlite_error,
)
from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    CHAINED_COLUMNS,
    DELIVERY_COLUMNS,
    LINK_COLUMNS,
    LLM_CALL_COLUMNS,
    VERDICT_COLUMNS,
    EncodedDecision,
    row_sha256,
)
from middleware.decision_log.writes import HEAD_SQL, Delivery, Job

# Compact, NaN refused (PostgreSQL's JSON has none), non-ASCII kept as is (shorter).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _from_json(table: str, columns: Sequence[str], param: int, *, into: str = "") -> str:
    names = ", ".join(columns)
    return (
        f"INSERT INTO {into or table} ({names}) SELECT {names} "
        f"FROM jsonb_populate_recordset(NULL::{table}, ${param}::jsonb)"
    )


# One statement: every table of the group, then the head. Foreign keys are
# checked at the end of the statement, when the decisions are in.
APPEND_SQL = (
    f"WITH d AS ({_from_json('decisions', CHAINED_COLUMNS, 1)}), "
    f"f AS ({_from_json('decisions', ('seq', 'text', 'reply'), 1, into='decisions_fts')}), "
    f"v AS ({_from_json('verdicts', VERDICT_COLUMNS, 2)}), "
    f"c AS ({_from_json('candidates', CANDIDATE_COLUMNS, 3)}), "
    f"l AS ({_from_json('llm_calls', LLM_CALL_COLUMNS, 4)}), "
    f"e AS ({_from_json('deliveries', (*DELIVERY_COLUMNS, *LINK_COLUMNS), 5)}) "
    "UPDATE chain_head SET seq = $6, sha256 = $7 WHERE id = 1"
).replace("INSERT INTO decisions_fts (seq,", "INSERT INTO decisions_fts (rowid,")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A group's rows as JSON, all but the chain links."""

    decisions: list[tuple[str, str]]  # (content hash, row JSON without seq and links)
    verdicts: str
    candidates: str
    llm_calls: str
    deliveries: list[tuple[str, Delivery]]  # (content hash, the delivery)


def prepare(jobs: Sequence[Job]) -> Prepared | None:
    """The group ready for :func:`commit`, or None if it must go the shared way."""
    if not all(isinstance(j, EncodedDecision | Delivery) for j in jobs):
        return None
    decisions = [j for j in jobs if isinstance(j, EncodedDecision)]
    try:
        return Prepared(
            decisions=[(d.content_sha256, _JSON(d.row)) for d in decisions],
            verdicts=_JSON([v for d in decisions for v in d.verdicts]),
            candidates=_JSON([c for d in decisions for c in d.candidates]),
            llm_calls=_JSON([c for d in decisions for c in d.llm_calls]),
            deliveries=[
                (row_sha256(DELIVERY_COLUMNS, j.row), j) for j in jobs if isinstance(j, Delivery)
            ],
        )
    except ValueError:  # a float JSON cannot hold
        return None


async def commit(db: SqlConnection, group: Prepared) -> list[None]:
    """Append the group to the chain in one transaction; a result (None) per job.

    All or nothing, as :func:`..writes.commit`: on any error the transaction
    is rolled back (or was cut off with the connection) and the error raised
    as the :mod:`sqlite3` class the writer sorts errors by.
    """
    conn, stats = db.conn, db.lock_stats
    try:
        asked = time.perf_counter()
        await conn.execute(BEGIN_LOCKED)
        locked = time.perf_counter()
        stats.waits += 1
        stats.wait_s += locked - asked
        try:
            await _append(conn, group)
            await conn.execute("COMMIT")
        finally:
            stats.held_s += time.perf_counter() - locked
    except DRIVER_ERRORS as exc:
        await _roll_back(db)
        raise as_sqlite_error(exc) from exc
    except BaseException:
        await _roll_back(db)
        raise
    return [None] * (len(group.decisions) + len(group.deliveries))


async def _append(conn: asyncpg.Connection, group: Prepared) -> None:
    """Under the lock: read the head, link the group to it, write it all in one statement."""
    found = await conn.fetchrow(HEAD_SQL)
    if found is None:
        raise sqlite3.IntegrityError("the chain head row is missing; run `guardbot verify`")
    chain = Chainer(found[0], found[1])
    decisions = []
    for content, body in group.decisions:
        seq, prev, sha = chain.append("decision", content)
        decisions.append(f'{{"seq":{seq},"prev_sha256":"{prev}","sha256":"{sha}",{body[1:]}')
    deliveries = []
    for content, delivery in group.deliveries:
        seq, prev, sha = chain.append("delivery", content)
        deliveries.append({**delivery.row, "seq": seq, "prev_sha256": prev, "sha256": sha})
    await conn.execute(
        APPEND_SQL, f"[{','.join(decisions)}]", group.verdicts, group.candidates,
        group.llm_calls, _JSON(deliveries), chain.seq, chain.sha256,
    )  # fmt: skip


async def _roll_back(db: SqlConnection) -> None:
    if db.in_transaction:
        try:
            await db.conn.execute("ROLLBACK")
        except DRIVER_ERRORS:
            db.conn.terminate()  # gone: the server rolls the transaction back itself
