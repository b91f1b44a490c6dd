"""The decision log's schema on PostgreSQL: the same migrations registry, in its dialect.

Each SQLite migration of :data:`..migrations.MIGRATIONS` has a counterpart
here under the same name, giving the same tables, columns and rules (a test
checks that none is missing), and ``_migrations`` lists the same names, so a
log copied from SQLite and a log born on PostgreSQL are told apart by nothing
but their backend. Types follow what SQLite hands back, so a row read from
either hashes the same: ``INTEGER`` -> ``integer`` (``bigint`` for ``seq``),
``REAL`` -> ``double precision``, ``TEXT`` -> ``text``.

Migrations run under the chain's advisory lock, so instances starting at the
same time apply each one exactly once. A PostgreSQL-only addition is a
migration with a ``pg`` name: ``m006_pg_chain_append`` and
``m007_pg_chain_append_rows``, the function the writer appends a group with
and the row types it takes (:mod:`.append`).
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from middleware.decision_log.append_only import PG_M008_SQL, PG_M009_SQL
from middleware.decision_log.chain import CURRENT_VERSION, GENESIS
from middleware.decision_log.migrations import pending
from middleware.decision_log.postgres.append import APPEND_FUNCTION_SQL, DEFERRABLE_SQL, LINKS_SQL
from middleware.decision_log.postgres.connection import LOCK_SQL
from middleware.decision_log.streams import PG_STREAM_SQL as M004_SQL

SETTINGS_CHANNEL = "guardbot_settings"  # NOTIFY'd on every committed settings change


def _append_only(table: str, message: str) -> str:
    return f"""
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION guardbot_refuse('{message}');
"""


M001_SQL = (
    """
CREATE FUNCTION guardbot_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TABLE decisions (
    seq bigint PRIMARY KEY,
    id text NOT NULL UNIQUE,
    created_utc text NOT NULL,
    received_utc text NOT NULL,
    platform text NOT NULL,
    channel_id text NOT NULL,
    thread_id text NOT NULL,
    user_id text NOT NULL,
    user_name text NOT NULL,
    message_id text NOT NULL,
    history_turns integer NOT NULL,
    text text,
    text_chars integer NOT NULL,
    text_sha256 text NOT NULL,
    action text NOT NULL CHECK (action IN ('replied', 'blocked', 'error')),
    reply text,
    reply_chars integer NOT NULL,
    reply_sha256 text NOT NULL,
    blocked_by text,
    error text,
    selection_method text,
    selection_json text,
    total_ms double precision NOT NULL,
    input_guards_ms double precision NOT NULL,
    generation_ms double precision NOT NULL,
    output_guards_ms double precision NOT NULL,
    selection_ms double precision NOT NULL,
    saved_ms double precision NOT NULL,
    tokens_in integer NOT NULL,
    tokens_out integer NOT NULL,
    cost_usd double precision NOT NULL,
    config_fingerprint text NOT NULL,
    prev_sha256 text NOT NULL,
    sha256 text NOT NULL
);

CREATE INDEX decisions_thread ON decisions (platform, channel_id, thread_id, seq);
CREATE INDEX decisions_created ON decisions (created_utc);
CREATE INDEX decisions_user ON decisions (user_id, created_utc);
CREATE INDEX decisions_channel ON decisions (channel_id, created_utc);
CREATE INDEX decisions_sha256 ON decisions (sha256);

-- SQLite's AUTOINCREMENT counter under SQLite's name (the shared write SQL reads
-- it): the last seq ever used, so a removed tail shows as a gap, never reused.
CREATE TABLE sqlite_sequence (name text PRIMARY KEY, seq bigint NOT NULL);
INSERT INTO sqlite_sequence VALUES ('decisions', 0);
CREATE FUNCTION guardbot_count_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sqlite_sequence SET seq = greatest(seq, (SELECT max(seq) FROM fresh))
    WHERE name = 'decisions';
    RETURN NULL;
END $$;
CREATE TRIGGER decisions_count_seq AFTER INSERT ON decisions
    REFERENCING NEW TABLE AS fresh FOR EACH STATEMENT EXECUTE FUNCTION guardbot_count_seq();

CREATE TABLE verdicts (
    decision_id text NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position integer NOT NULL,
    guard text NOT NULL,
    stage text NOT NULL,
    candidate_index integer,
    outcome text NOT NULL,
    blocking integer NOT NULL,
    category text NOT NULL,
    score double precision,
    confidence double precision,
    reason text NOT NULL,
    latency_ms double precision NOT NULL,
    model text,
    tokens_in integer NOT NULL,
    tokens_out integer NOT NULL,
    raw_output text,
    members_json text,
    PRIMARY KEY (decision_id, position)
);

CREATE TABLE candidates (
    decision_id text NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    candidate_index integer NOT NULL,
    text text,
    text_chars integer NOT NULL,
    text_sha256 text NOT NULL,
    model text NOT NULL,
    temperature double precision,
    latency_ms double precision NOT NULL,
    tokens_in integer NOT NULL,
    tokens_out integer NOT NULL,
    score double precision,
    chosen integer NOT NULL,
    safe integer,
    error text,
    PRIMARY KEY (decision_id, candidate_index)
);

CREATE TABLE llm_calls (
    decision_id text NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position integer NOT NULL,
    purpose text NOT NULL,
    model text NOT NULL,
    tokens_in integer NOT NULL,
    tokens_out integer NOT NULL,
    latency_ms double precision NOT NULL,
    error text,
    PRIMARY KEY (decision_id, position)
);

CREATE TABLE deliveries (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    decision_id text NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    created_utc text NOT NULL,
    status text NOT NULL CHECK (status IN ('sent', 'failed', 'none')),
    error text
);
CREATE INDEX deliveries_decision ON deliveries (decision_id);

CREATE TABLE chain_checkpoints (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_utc text NOT NULL,
    cutoff_utc text NOT NULL,
    through_seq bigint NOT NULL,
    through_id text NOT NULL,
    through_sha256 text NOT NULL,
    pruned_count integer NOT NULL
);

CREATE TABLE settings (
    scope text NOT NULL,
    key text NOT NULL,
    value_json text NOT NULL,
    updated_utc text NOT NULL,
    actor text NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE admin_actions (
    id text PRIMARY KEY,
    created_utc text NOT NULL,
    actor text NOT NULL,
    platform text NOT NULL,
    channel_id text NOT NULL,
    command text NOT NULL,
    scope text,
    key text,
    old_json text,
    new_json text,
    allowed integer NOT NULL,
    error text
);

CREATE TABLE replay_runs (
    id text PRIMARY KEY,
    created_utc text NOT NULL,
    actor text NOT NULL,
    config_fingerprint text NOT NULL,
    decisions_count integer NOT NULL,
    changed_count integer NOT NULL,
    duration_ms double precision NOT NULL,
    filters_json text NOT NULL,
    summary_json text NOT NULL,
    changes_json text NOT NULL
);

-- The search index, filled by the shared write SQL as SQLite's FTS5 table is;
-- `rowid` is the decision's seq, as there.
CREATE TABLE decisions_fts (
    rowid bigint PRIMARY KEY REFERENCES decisions (seq) ON DELETE CASCADE,
    text text,
    reply text,
    tsv tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', coalesce(text, '') || ' ' || coalesce(reply, ''))) STORED
);
CREATE INDEX decisions_fts_tsv ON decisions_fts USING gin (tsv);

-- An FTS5 query as the shared code builds it ("word" "prefix"*) as a tsquery.
CREATE FUNCTION fts5_query(q text) RETURNS tsquery LANGUAGE sql IMMUTABLE AS $$
    SELECT to_tsquery('simple', coalesce(string_agg(
        quote_literal(lower(m[1])) || CASE WHEN m[2] = '*' THEN ':*' ELSE '' END, ' & '), ''))
    FROM regexp_matches(q, '"([^"]*)"(\\*?)', 'g') AS m
$$;

-- SQLite sums truth values as 0 and 1 (stats counts errors that way).
CREATE FUNCTION guardbot_count_true(n bigint, b boolean) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT AS 'SELECT n + b::integer';
CREATE AGGREGATE sum(boolean) (SFUNC = guardbot_count_true, STYPE = bigint, INITCOND = '0');

-- Append-only: the hash chain detects tampering; these stop accidents.
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
    FOR EACH ROW EXECUTE FUNCTION guardbot_refuse('decisions are append-only');

-- Only rows already covered by a prune checkpoint may be deleted.
CREATE FUNCTION guardbot_prunable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF old.seq > (SELECT coalesce(max(through_seq), 0) FROM chain_checkpoints) THEN
        RAISE EXCEPTION 'decisions are append-only; only guardbot prune removes old rows'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN old;
END $$;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION guardbot_prunable();

-- Every instance LISTENs: a committed settings change reaches them all at once.
CREATE FUNCTION guardbot_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('"""
    + SETTINGS_CHANNEL
    + """', '');
    RETURN NULL;
END $$;
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION guardbot_settings_changed();
"""
    + "".join(
        _append_only(table, f"{table} are append-only")
        for table in (
            "verdicts",
            "candidates",
            "llm_calls",
            "deliveries",
            "admin_actions",
            "replay_runs",
            "chain_checkpoints",
        )  # fmt: skip
    )
)

# The FTS5 index lost its word positions in SQLite; a tsvector never needed them.
M002_SQL = "SELECT 1"

# Chain format v2 (SQLite's m003_chain_v2): deliveries, admin actions and
# checkpoints are chained; the head row holds the last seq and hash. A
# PostgreSQL log starts empty (or is copied from an upgraded SQLite log), so
# adopting v1 records is the empty case: no record to append, head at genesis.
M003_SQL = (
    "".join(
        f"ALTER TABLE {t} ADD COLUMN {c};\n"
        for t in ("deliveries", "admin_actions", "chain_checkpoints")
        for c in ("seq bigint", "prev_sha256 text", "sha256 text")
    )
    + f"""
ALTER TABLE admin_actions ADD COLUMN changes_setting integer NOT NULL DEFAULT 0;
ALTER TABLE chain_checkpoints ADD COLUMN settings_json text;
CREATE UNIQUE INDEX deliveries_seq ON deliveries (seq);
CREATE UNIQUE INDEX admin_actions_seq ON admin_actions (seq);
CREATE UNIQUE INDEX chain_checkpoints_seq ON chain_checkpoints (seq);
CREATE INDEX admin_actions_setting ON admin_actions (changes_setting, seq);
CREATE TABLE chain_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    sha256 text NOT NULL
);
CREATE TABLE chain_versions (
    version integer PRIMARY KEY,
    from_seq bigint NOT NULL,
    applied_utc text NOT NULL
);
DROP TRIGGER deliveries_no_update ON deliveries;
DROP TRIGGER admin_actions_no_update ON admin_actions;
INSERT INTO chain_versions VALUES (1, 1, to_char(now() AT TIME ZONE 'UTC',
    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
INSERT INTO chain_versions VALUES ({CURRENT_VERSION}, 1, to_char(now() AT TIME ZONE 'UTC',
    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
INSERT INTO chain_head VALUES (1, 0, '{GENESIS}');

CREATE FUNCTION guardbot_prunable_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF old.seq IS NULL OR old.seq > (SELECT coalesce(max(through_seq), 0)
                                     FROM chain_checkpoints) THEN
        RAISE EXCEPTION '% are append-only; only guardbot prune removes old rows', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN old;
END $$;
"""
    + "".join(
        _append_only(table, f"{table} are append-only")
        + f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION guardbot_prunable_record();\n"
        for table in ("deliveries", "admin_actions")
    )
    + "CREATE TRIGGER chain_checkpoints_no_delete BEFORE DELETE ON chain_checkpoints\n"
    "    FOR EACH ROW EXECUTE FUNCTION guardbot_prunable_record();\n"
    + "".join(
        f"CREATE TRIGGER chain_versions_no_{what} BEFORE {what.upper()} ON chain_versions\n"
        "    FOR EACH ROW EXECUTE FUNCTION guardbot_refuse('chain_versions are append-only');\n"
        for what in ("update", "delete")
    )
    + "CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head\n"
    "    FOR EACH ROW EXECUTE FUNCTION guardbot_refuse('the chain head is never deleted');\n"
)

# Platform events claimed by an instance, so each is answered once (..claims).
M005_SQL = """
CREATE TABLE event_claims (
    platform text NOT NULL,
    event_id text NOT NULL,
    claimed_utc text NOT NULL,
    PRIMARY KEY (platform, event_id)
);
CREATE INDEX event_claims_claimed ON event_claims (claimed_utc);
"""

PG_MIGRATIONS: list[tuple[str, str]] = [
    ("m001_initial", M001_SQL),
    ("m002_search_index_without_positions", M002_SQL),
    ("m003_chain_v2", M003_SQL),
    ("m004_stream_events", M004_SQL),
    ("m005_event_claims", M005_SQL),
    # PostgreSQL only (see .append). m006's first guardbot_append(jsonb, ...) is left where
    # it was made (an instance not yet upgraded still appends with it).
    ("m006_pg_chain_append", LINKS_SQL + DEFERRABLE_SQL),
    ("m007_pg_chain_append_rows", APPEND_FUNCTION_SQL),
    ("m008_append_only_parts", PG_M008_SQL),
    ("m009_no_truncate_or_replace", PG_M009_SQL),
]


async def applied(conn: asyncpg.Connection) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('_migrations') IS NOT NULL")
    if not exists:
        return []
    return [r[0] for r in await conn.fetch("SELECT name FROM _migrations ORDER BY applied_utc")]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction under the chain lock."""
    ran = []
    async with conn.transaction():
        await conn.execute(LOCK_SQL)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name text PRIMARY KEY, applied_utc text "
            "NOT NULL)"
        )
    for name, sql in pending(PG_MIGRATIONS, await applied(conn)):
        async with conn.transaction():
            await conn.execute(LOCK_SQL)  # another instance may be migrating right now
            if await conn.fetchval("SELECT 1 FROM _migrations WHERE name = $1", name):
                continue
            await conn.execute(sql)
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await conn.execute("INSERT INTO _migrations VALUES ($1, $2)", name, now)
        ran.append(name)
    return ran
