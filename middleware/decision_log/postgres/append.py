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

- the instance sends each table's rows as one array of a row type of the
  function's own (:data:`ROW_TYPES`; asyncpg encodes a row's dict as the
  composite, binary, field by field, as it binds the shared write's
  parameters), and each chained record's content hash (everything the chain
  needs but the head);
- ``guardbot_append`` (below, migration ``m007_pg_chain_append_rows``)
  inserts the verdicts, candidates and model calls (they carry no link; their
  foreign keys are checked at COMMIT), takes the chain lock, reads the head,
  links each record to the one before it, inserts the decisions with their
  search index (from the inserted rows, one statement) and the deliveries,
  moves the head, and the statement commits. The lock is held for that and
  nothing else: no client round trip is inside it.

The link is :func:`..chain.link_v2`, written a second time in SQL because it
has to run under the lock; the order is the shared write's (decisions, then
deliveries), so the rows, hashes and head are byte for byte what the shared
write stores (a test compares every table) and ``verify`` (which recomputes
every link in Python) checks it on every log. Anything else (settings, admin
actions, prune, stream chunks) goes the shared way.

Why arrays of rows and not JSON (the first version, ``m006``): parsing the
JSON into ``jsonb`` (keys sorted, numbers as ``numeric``) and rebuilding each
row from it was a fifth of the server's CPU per decision, and ``jsonb`` has
no negative zero, NaN or infinity, so such groups had to go the shared way.
A bound row keeps every value as the shared write binds it.

Why row types of its own and not the tables' (``decisions[]``, ...): asyncpg
learns a composite's columns once per connection, so a column a later
migration adds to a table would make every append of every instance already
running fail (``wrong number of columns``) until it restarted. The function's
types never change; a later change is a new type (``_v2``) and overload in a
new migration, as m006's JSON function is left for instances not yet
upgraded. Should a type change anyway, :func:`commit` reloads the types and
sends the group once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from middleware.decision_log.postgres.connection import (
    CHAIN_LOCK_KEY,
    DRIVER_ERRORS,
    SqlConnection,
    as_sqlite_error,
)
from middleware.decision_log.records import (
    DELIVERY_COLUMNS,
    EncodedDecision,
    Row,
    row_sha256,
)
from middleware.decision_log.writes import Delivery, Job

# guardbot_append's row types as made by m007, column by column as the tables had them
# then. Never edited: a change is a new type and overload in a new migration.
ROW_TYPES: dict[str, tuple[str, str]] = {
    "decisions": ("guardbot_decision_in_v1", """id text, created_utc text, received_utc text,
        platform text, channel_id text, thread_id text, user_id text, user_name text,
        message_id text, history_turns integer, text_chars integer, text_sha256 text,
        action text, reply_chars integer, reply_sha256 text, blocked_by text, error text,
        selection_method text, selection_json text, total_ms double precision,
        input_guards_ms double precision, generation_ms double precision,
        output_guards_ms double precision, selection_ms double precision,
        saved_ms double precision, tokens_in integer, tokens_out integer,
        cost_usd double precision, config_fingerprint text, text text, reply text,
        rows_sha256_json text"""),
    "verdicts": ("guardbot_verdict_in_v1", """decision_id text, position integer, guard text,
        stage text, candidate_index integer, outcome text, blocking integer, category text,
        score double precision, confidence double precision, reason text,
        latency_ms double precision, model text, tokens_in integer, tokens_out integer,
        raw_output text, members_json text"""),
    "candidates": ("guardbot_candidate_in_v1", """decision_id text, candidate_index integer,
        text_chars integer, text_sha256 text, model text, temperature double precision,
        latency_ms double precision, tokens_in integer, tokens_out integer,
        score double precision, chosen integer, safe integer, error text, text text"""),
    "llm_calls": ("guardbot_llm_call_in_v1", """decision_id text, position integer,
        purpose text, model text, tokens_in integer, tokens_out integer,
        latency_ms double precision, error text"""),
    "deliveries": ("guardbot_delivery_in_v1", """decision_id text, created_utc text,
        status text, error text"""),
}  # fmt: skip


def row_type(table: str) -> str:
    return ROW_TYPES[table][0]


def columns(table: str) -> tuple[str, ...]:
    """The columns of ``table``'s row type, in order."""
    return tuple(c.split()[0] for c in ROW_TYPES[table][1].split(","))


TYPES_SQL = "".join(f"CREATE TYPE {name} AS ({cols});\n" for name, cols in ROW_TYPES.values())


def _plain_insert(table: str, rows: str) -> str:
    names = ", ".join(columns(table))
    return f"""
        INSERT INTO {table} ({names}) SELECT {names} FROM unnest({rows});"""


def _linked_insert(table: str, rows: str) -> str:
    """Insert the rows of ``rows`` in order, each with seq, prev_sha256 and sha256 from
    ``links`` (computed before) after ``head_seq`` / ``head_sha``."""
    names = ", ".join(columns(table))
    values = ", ".join(f"r.{c}" for c in columns(table))
    return f"""
        INSERT INTO {table} ({names}, seq, prev_sha256, sha256)
        SELECT {values}, head_seq + r.ordinality,
            coalesce(links[r.ordinality - 1], head_sha), links[r.ordinality]
        FROM unnest({rows}) WITH ORDINALITY AS r ORDER BY r.ordinality"""


def _advance(rows: str) -> str:
    return f"""
        head_seq := head_seq + cardinality({rows});
        head_sha := links[cardinality({rows})];"""


# chain.link_v2: H(json([2, kind, seq, prev_sha256, content])) for each content in turn.
LINKS_SQL = """
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
"""
# The parts' foreign keys may wait for COMMIT (still under the lock), but only where
# guardbot_append says so: INITIALLY IMMEDIATE still for every other write.
DEFERRABLE_SQL = "".join(
    f"ALTER TABLE {table} ALTER CONSTRAINT {table}_decision_id_fkey DEFERRABLE;\n"
    for table in ("verdicts", "candidates", "llm_calls")
)
# An empty part costs no statement: a message's own group is often one decision,
# and its delivery comes in the next.
APPEND_FUNCTION_SQL = (
    TYPES_SQL
    + f"""
CREATE FUNCTION guardbot_append(
    d_rows {row_type("decisions")}[], d_contents text[], v_rows {row_type("verdicts")}[],
    c_rows {row_type("candidates")}[], l_rows {row_type("llm_calls")}[],
    e_rows {row_type("deliveries")}[], e_contents text[],
    OUT wait_s double precision, OUT held_s double precision
) LANGUAGE plpgsql AS $$
DECLARE
    asked timestamptz;
    locked timestamptz;
    head_seq bigint;
    head_sha text;
    links text[];
BEGIN
    -- The verdicts, candidates and model calls carry no link: written before the lock,
    -- their decisions' existence checked at COMMIT (still under the lock).
    IF cardinality(v_rows) + cardinality(c_rows) + cardinality(l_rows) > 0 THEN
        SET CONSTRAINTS verdicts_decision_id_fkey, candidates_decision_id_fkey,
            llm_calls_decision_id_fkey DEFERRED;"""
    + _plain_insert("verdicts", "v_rows")
    + _plain_insert("candidates", "c_rows")
    + _plain_insert("llm_calls", "l_rows")
    + f"""
    END IF;
    asked := clock_timestamp();
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
    locked := clock_timestamp();
    SELECT seq, sha256 INTO head_seq, head_sha FROM chain_head WHERE id = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the chain head row is missing; run `guardbot verify`'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF cardinality(d_rows) > 0 THEN
        links := guardbot_links('decision', head_seq, head_sha, d_contents);
        -- The search index from the rows as inserted, in the same statement (a query
        -- for the new rows was planned once per connection, and a plan made while
        -- the table was small read all of it on every append).
        WITH d AS ("""
    + _linked_insert("decisions", "d_rows")
    + """
        RETURNING seq, text, reply)
        INSERT INTO decisions_fts (rowid, text, reply) SELECT seq, text, reply FROM d;"""
    + _advance("d_rows")
    + """
    END IF;
    IF cardinality(e_rows) > 0 THEN
        links := guardbot_links('delivery', head_seq, head_sha, e_contents);"""
    + _linked_insert("deliveries", "e_rows")
    + ";"
    + _advance("e_rows")
    + """
    END IF;
    UPDATE chain_head SET seq = head_seq, sha256 = head_sha WHERE id = 1;
    wait_s := extract(epoch FROM locked - asked);
    held_s := extract(epoch FROM clock_timestamp() - locked);  -- COMMIT not included
END $$;
"""
)
APPEND_SQL = "SELECT wait_s, held_s FROM guardbot_append($1, $2, $3, $4, $5, $6, $7)"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A group's rows, table by table, and each chained record's content hash."""

    args: tuple[list[Row] | list[str], ...]  # guardbot_append's, in order
    jobs: int


def prepare(jobs: Sequence[Job]) -> Prepared | None:
    """The group ready for :func:`commit`, or None if it must go the shared way."""
    if not all(isinstance(j, EncodedDecision | Delivery) for j in jobs):
        return None
    decisions = [j for j in jobs if isinstance(j, EncodedDecision)]
    deliveries = [j.row for j in jobs if isinstance(j, Delivery)]
    args: tuple[list[Any], ...] = (
        [d.row for d in decisions],
        [d.content_sha256 for d in decisions],
        [v for d in decisions for v in d.verdicts],
        [c for d in decisions for c in d.candidates],
        [c for d in decisions for c in d.llm_calls],
        deliveries,
        [row_sha256(DELIVERY_COLUMNS, row) for row in deliveries],
    )
    return Prepared(args=args, jobs=len(jobs))


async def commit(db: SqlConnection, group: Prepared) -> list[None]:
    """Append the group to the chain: one statement, its own transaction; a result per job.

    All or nothing: on any error the database rolls the statement back, and
    the error is raised as the :mod:`sqlite3` class the writer sorts errors by
    (a value of the wrong type, refused before anything is sent, is a
    constraint error, as it is on the shared way).
    """
    try:
        try:
            found = await db.conn.fetchrow(APPEND_SQL, *group.args)
        except (asyncpg.DatatypeMismatchError, asyncpg.InvalidCachedStatementError):
            # A row type changed since this connection learned it (the statement was
            # refused whole): learn it again and send the group once more.
            await db.conn.reload_schema_state()
            found = await db.conn.fetchrow(APPEND_SQL, *group.args)
    except DRIVER_ERRORS as exc:
        raise as_sqlite_error(exc) from exc
    assert found is not None  # a function with OUT parameters returns one row
    db.lock_stats.waits += 1
    db.lock_stats.wait_s += found[0]
    db.lock_stats.held_s += found[1]
    return [None] * group.jobs
