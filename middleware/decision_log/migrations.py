"""Forward-only schema migrations, as a registry of numbered functions.

Every open applies, in order, each ``mNNN_*`` function not yet listed in the
``_migrations`` table, inside one ``BEGIN IMMEDIATE`` transaction per
migration (SQLite DDL is transactional, so a failed migration leaves nothing
behind). A database that lists a migration this code does not know was
written by a newer guardbot and is refused rather than misread. Migrations
are history: never edit one that has shipped, add the next number instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from middleware.decision_log.records import utc_text
from middleware.types import utc_now

Migration = Callable[[sqlite3.Connection], None]
Step = TypeVar("Step")  # a SQLite migration function or a PostgreSQL script
MIGRATIONS: list[tuple[str, Migration]] = []
APPLIED_SQL = "SELECT name FROM _migrations ORDER BY rowid"


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run a script statement by statement inside the migration's transaction
    (``executescript`` would commit it); trigger bodies hold ';', so SQLite says where
    each statement ends."""
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            db.execute(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement: {current.strip()[:60]}")


def pending(registry: Sequence[tuple[str, Step]], done: list[str]) -> list[tuple[str, Step]]:
    """The steps of ``registry`` not yet ``done``, in order; any backend's registry.
    A name the registry does not know means a newer guardbot wrote the database."""
    known = {name for name, _ in registry}
    unknown = [name for name in done if name not in known]
    if unknown:
        raise RuntimeError(
            f"the database was written by a newer guardbot (unknown migrations: "
            f"{', '.join(unknown)}); upgrade guardbot to read it"
        )
    return [(name, step) for name, step in registry if name not in done]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied now. ``db`` is in autocommit mode."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        "name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL) STRICT"
    )
    ran = []
    for name, fn in pending(MIGRATIONS, [r[0] for r in db.execute(APPLIED_SQL)]):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the lock.
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                db.execute("COMMIT")
                continue
            fn(db)
            now = utc_text(utc_now())
            db.execute("INSERT INTO _migrations (name, applied_utc) VALUES (?, ?)", (name, now))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    run_script(db, M001_SQL)


# Chain order is `seq` (commit order; AUTOINCREMENT never reuses a number, so
# a cut-off tail shows as a gap); `id` sorts by creation time. Texts are NULL
# when [log] store_text = false; their *_sha256 and *_chars stay.
M001_SQL = """
CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_utc TEXT NOT NULL,
    received_utc TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    history_turns INTEGER NOT NULL,
    text TEXT,
    text_chars INTEGER NOT NULL,
    text_sha256 TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('replied', 'blocked', 'error')),
    reply TEXT,
    reply_chars INTEGER NOT NULL,
    reply_sha256 TEXT NOT NULL,
    blocked_by TEXT,
    error TEXT,
    selection_method TEXT,
    selection_json TEXT,
    total_ms REAL NOT NULL,
    input_guards_ms REAL NOT NULL,
    generation_ms REAL NOT NULL,
    output_guards_ms REAL NOT NULL,
    selection_ms REAL NOT NULL,
    saved_ms REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    config_fingerprint TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL,
    sha256 TEXT NOT NULL
) STRICT;

CREATE INDEX decisions_thread ON decisions (platform, channel_id, thread_id, seq);
CREATE INDEX decisions_created ON decisions (created_utc);
CREATE INDEX decisions_user ON decisions (user_id, created_utc);
CREATE INDEX decisions_channel ON decisions (channel_id, created_utc);

CREATE TABLE verdicts (
    decision_id TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    guard TEXT NOT NULL,
    stage TEXT NOT NULL,
    candidate_index INTEGER,
    outcome TEXT NOT NULL,
    blocking INTEGER NOT NULL,
    category TEXT NOT NULL,
    score REAL,
    confidence REAL,
    reason TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    model TEXT,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    raw_output TEXT,
    members_json TEXT,
    PRIMARY KEY (decision_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE candidates (
    decision_id TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    candidate_index INTEGER NOT NULL,
    text TEXT,
    text_chars INTEGER NOT NULL,
    text_sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    temperature REAL,
    latency_ms REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    score REAL,
    chosen INTEGER NOT NULL,
    safe INTEGER,
    error TEXT,
    PRIMARY KEY (decision_id, candidate_index)
) STRICT, WITHOUT ROWID;

CREATE TABLE llm_calls (
    decision_id TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (decision_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    created_utc TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'none')),
    error TEXT
) STRICT;

CREATE INDEX deliveries_decision ON deliveries (decision_id);

CREATE TABLE chain_checkpoints (
    id INTEGER PRIMARY KEY,
    created_utc TEXT NOT NULL,
    cutoff_utc TEXT NOT NULL,
    through_seq INTEGER NOT NULL,
    through_id TEXT NOT NULL,
    through_sha256 TEXT NOT NULL,
    pruned_count INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    updated_utc TEXT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;

CREATE TABLE admin_actions (
    id TEXT PRIMARY KEY,
    created_utc TEXT NOT NULL,
    actor TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    command TEXT NOT NULL,
    scope TEXT,
    key TEXT,
    old_json TEXT,
    new_json TEXT,
    allowed INTEGER NOT NULL,
    error TEXT
) STRICT;

CREATE TABLE replay_runs (
    id TEXT PRIMARY KEY,
    created_utc TEXT NOT NULL,
    actor TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    decisions_count INTEGER NOT NULL,
    changed_count INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    filters_json TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    changes_json TEXT NOT NULL
) STRICT;

-- Filled by the writer in the same transaction as the decision (an insert
-- trigger costs several times more per row than one executemany).
CREATE VIRTUAL TABLE decisions_fts USING fts5 (
    text, reply, content = 'decisions', content_rowid = 'seq'
);

CREATE TRIGGER decisions_fts_delete AFTER DELETE ON decisions BEGIN
    INSERT INTO decisions_fts (decisions_fts, rowid, text, reply)
    VALUES ('delete', old.seq, old.text, old.reply);
END;

-- Append-only: the hash chain detects tampering; these stop accidents.
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions BEGIN
    SELECT RAISE(ABORT, 'decisions are append-only');
END;

-- Only rows already covered by a prune checkpoint may be deleted.
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
WHEN old.seq > (SELECT coalesce(max(through_seq), 0) FROM chain_checkpoints) BEGIN
    SELECT RAISE(ABORT, 'decisions are append-only; only guardbot prune removes old rows');
END;

"""

# Every other table is append-only in the same way as `decisions`.
APPEND_ONLY = (
    "verdicts",
    "candidates",
    "llm_calls",
    "deliveries",
    "admin_actions",
    "replay_runs",
    "chain_checkpoints",
)
M001_SQL += "".join(
    f"""
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN
    SELECT RAISE(ABORT, '{table} are append-only');
END;
"""
    for table in APPEND_ONLY
)


@migration
def m002_search_index_without_positions(db: sqlite3.Connection) -> None:
    """The full-text index keeps which rows hold a word, not where (FTS5 ``detail = none``).

    Word positions cost a sixth of the writer's work per decision and serve
    only phrase queries, which `guardbot logs -q` never asks (all words must
    match, anywhere). Rebuilt from the stored texts, so no search is lost.
    """
    run_script(db, M002_SQL)


M002_SQL = """
DROP TRIGGER decisions_fts_delete;
DROP TABLE decisions_fts;
CREATE VIRTUAL TABLE decisions_fts USING fts5 (
    text, reply, content = 'decisions', content_rowid = 'seq', detail = none
);
INSERT INTO decisions_fts (decisions_fts) VALUES ('rebuild');
CREATE TRIGGER decisions_fts_delete AFTER DELETE ON decisions BEGIN
    INSERT INTO decisions_fts (decisions_fts, rowid, text, reply)
    VALUES ('delete', old.seq, old.text, old.reply);
END;
"""


@migration
def m003_chain_v2(db: sqlite3.Connection) -> None:
    """Chain format v2: deliveries, admin actions and prune checkpoints join the chain.

    Adds the link columns, the chain's head (last seq and hash) and the table of
    formats: v1 links (decisions so far) keep verifying as before, records from
    the head on use v2. Existing deliveries and admin actions are appended to
    the chain now, in time order, so they are covered from this upgrade on.
    """
    from middleware.decision_log import upgrade  # the v2 schema and chain code, when it runs

    run_script(db, upgrade.M003_SQL)
    upgrade.adopt(db)
    run_script(db, upgrade.M003_TRIGGERS)


@migration
def m004_stream_events(db: sqlite3.Connection) -> None:
    """Streamed replies: each chunk chained before it is shown (see ``streams.py``);
    decisions hold their rows' hashes (``records.ROWS_COLUMN``)."""
    from middleware.decision_log.streams import STREAM_SQL  # its rows' own module

    run_script(db, STREAM_SQL)


@migration
def m005_event_claims(db: sqlite3.Connection) -> None:
    """Platform events claimed by an instance, so each is answered once (see ``claims.py``)."""
    from middleware.decision_log.claims import CLAIMS_SQL  # its rows' own module

    run_script(db, CLAIMS_SQL)


# Numbered after PostgreSQL's own m006 and m007, so that a number names one migration.
@migration
def m008_append_only_parts(db: sqlite3.Connection) -> None:
    """The last tables that could lose rows with no trigger dropped first: a decision's
    verdicts, candidates and model calls go only with their decision (a prune), replay
    runs never (they are outside the chain: nothing else would show one gone)."""
    from middleware.decision_log.append_only import M008_SQL  # with its PostgreSQL twin

    run_script(db, M008_SQL)


@migration
def m009_no_truncate_or_replace(db: sqlite3.Connection) -> None:
    """A replay run is not replaced by ``INSERT OR REPLACE`` either, which deletes the old
    row without firing m008's delete trigger (PostgreSQL's m009 refuses TRUNCATE)."""
    from middleware.decision_log.append_only import M009_SQL

    run_script(db, M009_SQL)
