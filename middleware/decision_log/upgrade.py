"""Chain format v2's schema, and bringing a log written in v1 onto it (migration ``m003``).

v1 chained decisions only. The upgrade records the head (the last seq ever
used, AUTOINCREMENT's counter, and the last decision's hash) and the formats
(v1 from seq 1, v2 from the head on), then appends the deliveries and admin
actions already in the log to the chain in time order, so that from the
upgrade on they are covered like new ones. Admin actions that set or reset
a setting are marked as such, which is what the settings in force are
derived from. It runs inside the migration's transaction. (A PostgreSQL log
never held v1 records: its m003 starts the head at genesis.)
"""

from __future__ import annotations

import sqlite3
from typing import Any

from middleware.decision_log.chain import CURRENT_VERSION, GENESIS, Chainer
from middleware.decision_log.records import ADMIN_HASHED, DELIVERY_COLUMNS, row_sha256, utc_text
from middleware.types import utc_now

# Deliveries are rebuilt without ON DELETE CASCADE: a delivery recorded late (after
# decisions written later than its own) stays on the chain until a prune reaches its
# own seq, instead of vanishing with its decision and cutting the chain.
M003_SQL = (
    "".join(
        f"ALTER TABLE {t} ADD COLUMN {c};\n"
        for t in ("admin_actions", "chain_checkpoints")
        for c in ("seq INTEGER", "prev_sha256 TEXT", "sha256 TEXT")
    )
    + """
CREATE TABLE deliveries_v2 (
    id INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'none')),
    error TEXT,
    seq INTEGER,
    prev_sha256 TEXT,
    sha256 TEXT
) STRICT;
INSERT INTO deliveries_v2 (id, decision_id, created_utc, status, error)
    SELECT id, decision_id, created_utc, status, error FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_decision ON deliveries (decision_id);
ALTER TABLE admin_actions ADD COLUMN changes_setting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chain_checkpoints ADD COLUMN settings_json TEXT;
CREATE UNIQUE INDEX deliveries_seq ON deliveries (seq);
CREATE UNIQUE INDEX admin_actions_seq ON admin_actions (seq);
CREATE UNIQUE INDEX chain_checkpoints_seq ON chain_checkpoints (seq);
CREATE INDEX admin_actions_setting ON admin_actions (changes_setting, seq);
CREATE TABLE chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) STRICT;
CREATE TABLE chain_versions (
    version INTEGER PRIMARY KEY,
    from_seq INTEGER NOT NULL,
    applied_utc TEXT NOT NULL
) STRICT;
DROP TRIGGER admin_actions_no_update;
"""
)

# Chained rows leave only with a prune (covered by its checkpoint); formats never change.
M003_TRIGGERS = (
    "".join(
        f"""
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN
    SELECT RAISE(ABORT, '{table} are append-only');
END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
WHEN old.seq IS NULL OR old.seq > (SELECT coalesce(max(through_seq), 0) FROM chain_checkpoints)
BEGIN
    SELECT RAISE(ABORT, '{table} are append-only; only guardbot prune removes old rows');
END;
"""
        for table in ("deliveries", "admin_actions")
    )
    + """
CREATE TRIGGER chain_checkpoints_no_delete BEFORE DELETE ON chain_checkpoints
WHEN old.seq IS NULL OR old.seq > (SELECT coalesce(max(through_seq), 0) FROM chain_checkpoints)
BEGIN
    SELECT RAISE(ABORT, 'chain_checkpoints are append-only');
END;
CREATE TRIGGER deliveries_need_a_decision BEFORE INSERT ON deliveries
WHEN NOT EXISTS (SELECT 1 FROM decisions WHERE id = new.decision_id) BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: a delivery needs its decision');
END;
CREATE TRIGGER chain_versions_no_update BEFORE UPDATE ON chain_versions BEGIN
    SELECT RAISE(ABORT, 'chain_versions are append-only');
END;
CREATE TRIGGER chain_versions_no_delete BEFORE DELETE ON chain_versions BEGIN
    SELECT RAISE(ABORT, 'chain_versions are append-only');
END;
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head BEGIN
    SELECT RAISE(ABORT, 'the chain head is never deleted');
END;
"""
)

# An admin action of v1 set a setting when it was allowed, named a scope and key and
# carried an old or a new value (the only writer of such rows was the settings change).
V1_CHANGES_SETTING = (
    "allowed = 1 AND scope IS NOT NULL AND key IS NOT NULL "
    "AND (old_json IS NOT NULL OR new_json IS NOT NULL)"
)


def adopt(db: sqlite3.Connection) -> None:
    now = utc_text(utc_now())
    (last_seq,) = db.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0), "
        "coalesce((SELECT max(seq) FROM decisions), 0), "
        "coalesce((SELECT max(through_seq) FROM chain_checkpoints), 0))"
    ).fetchone()
    found = db.execute(
        "SELECT coalesce((SELECT sha256 FROM decisions ORDER BY seq DESC LIMIT 1), "
        "(SELECT through_sha256 FROM chain_checkpoints ORDER BY through_seq DESC LIMIT 1), ?)",
        (GENESIS,),
    ).fetchone()
    chain = Chainer(last_seq, found[0])
    db.execute("INSERT INTO chain_versions VALUES (1, 1, ?)", (now,))
    db.execute("INSERT INTO chain_versions VALUES (?, ?, ?)", (CURRENT_VERSION, last_seq + 1, now))
    db.execute(f"UPDATE admin_actions SET changes_setting = 1 WHERE {V1_CHANGES_SETTING}")
    records: list[tuple[str, str, str, dict[str, Any]]] = []
    columns = ("id", *DELIVERY_COLUMNS)
    for values in db.execute(f"SELECT {', '.join(columns)} FROM deliveries").fetchall():
        row = dict(zip(columns, values, strict=True))
        records.append((row["created_utc"], f"{int(row['id']):020d}", "delivery", row))
    for values in db.execute(f"SELECT {', '.join(ADMIN_HASHED)} FROM admin_actions").fetchall():
        row = dict(zip(ADMIN_HASHED, values, strict=True))
        records.append((row["created_utc"], row["id"], "admin action", row))
    for _, _, kind, row in sorted(records, key=lambda r: (r[0], r[2], r[1])):
        if kind == "delivery":
            seq, prev, sha = chain.append(kind, row_sha256(DELIVERY_COLUMNS, row))
            table = "deliveries"
        else:
            seq, prev, sha = chain.append(kind, row_sha256(ADMIN_HASHED, row))
            table = "admin_actions"
        db.execute(
            f"UPDATE {table} SET seq = ?, prev_sha256 = ?, sha256 = ? WHERE id = ?",
            (seq, prev, sha, row["id"]),
        )
    db.execute(
        "INSERT INTO chain_head (id, seq, sha256) VALUES (1, ?, ?)", (chain.seq, chain.sha256)
    )
