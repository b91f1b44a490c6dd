"""The hot path of the shared chain: a group of decisions and deliveries appended in one call.

Several instances append to one chain, so while one holds the chain lock
every other waits; what matters is how long it is held. The shared write
(:func:`..writes.commit`) runs one statement per table from the client, and
on PostgreSQL each is a round trip between two processes: from taking the
lock to COMMIT the head read, decisions, the search index, verdicts,
candidates, model calls, deliveries, the head update and COMMIT. On a busy
machine every one of them also waits for the instance to be scheduled, with
the lock held all along. For a group that holds only decisions and
deliveries (what every message writes) this module sends one statement,
outside any transaction, and the database does the rest itself:

- the instance turns every row into JSON (decisions and deliveries with
  their content hash, everything the chain needs but the head);
- ``guardbot_append`` (below, migration ``m006_pg_chain_append``) inserts
  the verdicts, candidates and model calls (they carry no link; their
  foreign keys are checked at COMMIT), takes the chain lock, reads the head,
  links each record to the one before it, inserts the decisions, their
  search index and the deliveries from the JSON arrays
  (``jsonb_populate_record``, columns by name), moves the head, and the
  statement commits. The lock is held for that and nothing else: no client
  round trip is inside it.

The link is :func:`..chain.link_v2`, written a second time in SQL because it
has to run under the lock; the order is the shared write's (decisions, then
deliveries), so the rows, hashes and head are byte for byte what the shared
write stores (a test compares every table) and ``verify`` (which recomputes
every link in Python) checks it on every log. Anything else (settings, admin
actions, prune, stream chunks) goes the shared way, as do floats JSON
cannot carry (NaN, infinity) and -0.0, which :func:`prepare` declines: JSON
keeps its sign, but ``jsonb`` numbers are ``numeric``, which has no negative
zero, so it would be stored as 0 while the content hash covers -0.0 (and
``verify`` would call that tampering); a bound parameter keeps it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from middleware.decision_log.postgres.connection import (
    CHAIN_LOCK_KEY,
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
from middleware.decision_log.writes import Delivery, Job

# Compact, NaN refused (PostgreSQL's JSON has none), non-ASCII kept as is (shorter).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
CONTENT = "content_sha256"  # the key of a record's content hash in its JSON (not a column)


def _linked_insert(table: str, columns: Sequence[str], rows: str) -> str:
    """Insert the JSON array ``rows`` in order, each with seq, prev_sha256 and sha256 added
    from ``links`` (computed before) after ``head_seq`` / ``head_sha``."""
    names = ", ".join(columns)
    return f"""
    INSERT INTO {table} ({names})
    SELECT {names} FROM jsonb_array_elements({rows}) WITH ORDINALITY AS a(item, n),
        jsonb_populate_record(NULL::{table}, item || jsonb_build_object(
            'seq', head_seq + n, 'prev_sha256', coalesce(links[n - 1], head_sha),
            'sha256', links[n])) AS r
    ORDER BY n;"""


def _plain_insert(table: str, columns: Sequence[str], rows: str) -> str:
    names = ", ".join(columns)
    return f"""
    INSERT INTO {table} ({names})
    SELECT {names} FROM jsonb_populate_recordset(NULL::{table}, {rows});"""


def _link(kind: str, rows: str) -> str:
    """Compute ``links`` for the records of ``rows`` (kind ``kind``) after the head."""
    return f"""
    links := guardbot_links('{kind}', head_seq, head_sha, ARRAY(
        SELECT item ->> '{CONTENT}' FROM jsonb_array_elements({rows}) WITH ORDINALITY AS a(item, n)
        ORDER BY n));"""


def _advance(rows: str) -> str:
    return f"""
    added := jsonb_array_length({rows});
    head_seq := head_seq + added;
    head_sha := coalesce(links[added], head_sha);"""


# The functions (a PostgreSQL-only migration: SQLite's writer needs none).
FUNCTIONS_SQL = (
    """
-- chain.link_v2: H(json([2, kind, seq, prev_sha256, content])) for each content in turn.
CREATE FUNCTION guardbot_links(kind text, after_seq bigint, prev text, contents text[])
RETURNS text[] LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    links text[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(contents, 1), 0) LOOP
        prev := encode(sha256(convert_to('[2,"' || kind || '",' || (after_seq + i) || ',"'
                                         || prev || '","' || contents[i] || '"]', 'UTF8')), 'hex');
        links := links || prev;
    END LOOP;
    RETURN links;
END $$;

CREATE FUNCTION guardbot_append(
    d_json jsonb, v_json jsonb, c_json jsonb, l_json jsonb, e_json jsonb,
    OUT wait_s double precision, OUT held_s double precision
) LANGUAGE plpgsql AS $$
DECLARE
    asked timestamptz;
    locked timestamptz;
    head_seq bigint;
    head_sha text;
    links text[];
    added integer;
BEGIN
    -- The verdicts, candidates and model calls carry no link: written before the lock,
    -- their decisions' existence checked at COMMIT (still under the lock).
    SET CONSTRAINTS verdicts_decision_id_fkey, candidates_decision_id_fkey,
        llm_calls_decision_id_fkey DEFERRED;"""
    + _plain_insert("verdicts", VERDICT_COLUMNS, "v_json")
    + _plain_insert("candidates", CANDIDATE_COLUMNS, "c_json")
    + _plain_insert("llm_calls", LLM_CALL_COLUMNS, "l_json")
    + "\n    asked := clock_timestamp();"
    + f"\n    PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});"
    + """
    locked := clock_timestamp();
    SELECT seq, sha256 INTO head_seq, head_sha FROM chain_head WHERE id = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the chain head row is missing; run `guardbot verify`'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;"""
    + _link("decision", "d_json")
    + _linked_insert("decisions", CHAINED_COLUMNS, "d_json")
    + """
    INSERT INTO decisions_fts (rowid, text, reply)
    SELECT seq, text, reply FROM decisions WHERE seq > head_seq ORDER BY seq;"""
    + _advance("d_json")
    + _link("delivery", "e_json")
    + _linked_insert("deliveries", (*DELIVERY_COLUMNS, *LINK_COLUMNS), "e_json")
    + _advance("e_json")
    + """
    UPDATE chain_head SET seq = head_seq, sha256 = head_sha WHERE id = 1;
    wait_s := extract(epoch FROM locked - asked);
    held_s := extract(epoch FROM clock_timestamp() - locked);  -- COMMIT not included
END $$;
"""
    + "".join(
        f"ALTER TABLE {table} ALTER CONSTRAINT {table}_decision_id_fkey DEFERRABLE;\n"
        for table in ("verdicts", "candidates", "llm_calls")
    )  # INITIALLY IMMEDIATE still: only guardbot_append defers them
)
APPEND_SQL = "SELECT wait_s, held_s FROM guardbot_append($1, $2, $3, $4, $5)"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A group's rows as JSON arrays, each chained record with its content hash."""

    decisions: str
    verdicts: str
    candidates: str
    llm_calls: str
    deliveries: str
    jobs: int


def prepare(jobs: Sequence[Job]) -> Prepared | None:
    """The group ready for :func:`commit`, or None if it must go the shared way."""
    if not all(isinstance(j, EncodedDecision | Delivery) for j in jobs):
        return None
    decisions = [j for j in jobs if isinstance(j, EncodedDecision)]
    try:
        group = Prepared(
            decisions=_JSON([{**d.row, CONTENT: d.content_sha256} for d in decisions]),
            verdicts=_JSON([v for d in decisions for v in d.verdicts]),
            candidates=_JSON([c for d in decisions for c in d.candidates]),
            llm_calls=_JSON([c for d in decisions for c in d.llm_calls]),
            deliveries=_JSON(
                [
                    {**j.row, CONTENT: row_sha256(DELIVERY_COLUMNS, j.row)}
                    for j in jobs
                    if isinstance(j, Delivery)
                ]
            ),  # fmt: skip
            jobs=len(jobs),
        )
    except ValueError:  # a float JSON cannot hold
        return None
    # A cheap look at the text first; only a group that may hold -0.0 has its rows walked.
    texts = (group.decisions, group.verdicts, group.candidates, group.llm_calls, group.deliveries)
    if any("-0.0" in t for t in texts) and _negative_zero(decisions, jobs):
        return None
    return group


def _negative_zero(decisions: Sequence[EncodedDecision], jobs: Sequence[Job]) -> bool:
    """Whether any row of the group holds -0.0 (``jsonb`` would store it as 0)."""
    rows = [r for d in decisions for r in (d.row, *d.verdicts, *d.candidates, *d.llm_calls)]
    rows += [j.row for j in jobs if isinstance(j, Delivery)]
    return any(
        v.__class__ is float and v == 0.0 and math.copysign(1.0, v) < 0.0
        for row in rows
        for v in row.values()
    )


async def commit(db: SqlConnection, group: Prepared) -> list[None]:
    """Append the group to the chain: one statement, its own transaction; a result per job.

    All or nothing: on any error the database rolls the statement back, and
    the error is raised as the :mod:`sqlite3` class the writer sorts errors by.
    """
    try:
        found = await db.conn.fetchrow(
            APPEND_SQL, group.decisions, group.verdicts, group.candidates, group.llm_calls,
            group.deliveries,
        )  # fmt: skip
    except DRIVER_ERRORS as exc:
        raise as_sqlite_error(exc) from exc
    assert found is not None  # a function with OUT parameters returns one row
    db.lock_stats.waits += 1
    db.lock_stats.wait_s += found[0]
    db.lock_stats.held_s += found[1]
    return [None] * group.jobs
