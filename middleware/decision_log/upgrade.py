"""Bringing a log written in chain format v1 onto v2 (run by migration ``m003``).

v1 chained decisions only. The upgrade records the head (the last seq ever
used, AUTOINCREMENT's counter, and the last decision's hash) and the formats
(v1 from seq 1, v2 from the head on), then appends the deliveries and admin
actions already in the log to the chain in time order, so that from the
upgrade on they are covered like new ones. Admin actions that set or reset
a setting are marked as such, which is what the settings in force are
derived from. It runs on a plain DB-API connection inside the migration's
transaction; another backend runs the same function on its own connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from middleware.decision_log.chain import CURRENT_VERSION, GENESIS, Chainer
from middleware.decision_log.records import ADMIN_HASHED, DELIVERY_COLUMNS, row_sha256


class Cursor(Protocol):
    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...


# An admin action of v1 set a setting when it was allowed, named a scope and key and
# carried an old or a new value (the only writer of such rows was the settings change).
V1_CHANGES_SETTING = (
    "allowed = 1 AND scope IS NOT NULL AND key IS NOT NULL "
    "AND (old_json IS NOT NULL OR new_json IS NOT NULL)"
)


def adopt(db: Connection) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
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
