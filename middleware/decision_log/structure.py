"""The log's structure besides the chain: append-only rules, schema and search index.

The chain proves what the records say; it cannot see a dropped trigger, an
index gone, a column added, or a search index that no longer matches the
texts, and each of those changes what the log does (a dropped trigger lets
rows go unnoticed until verify runs; a damaged search index hides decisions
from ``logs -q`` or makes the bot refuse every reply). `guardbot verify`
therefore also compares the file's schema objects with what the migrations
make, and the search index with the stored texts (:func:`problems`).

Since migration ``m008`` every table that holds records has its update and
delete triggers, so dropping one is the first step of any edit; this is what
shows it.
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from middleware.decision_log.chain import ChainReport, failure, not_checked
from middleware.decision_log.migrations import migrate

Schema = dict[tuple[str, str], str]  # (kind, name) -> its normalised SQL or column definition
# Every schema object but SQLite's own (sqlite_sequence, sqlite_stat1, autoindexes) and
# the migrations' list, which opening the log checks (early versions made it not STRICT).
_OBJECTS_SQL = (
    "SELECT type, name, coalesce(sql, '') FROM sqlite_master "
    "WHERE name NOT LIKE 'sqlite_%' AND tbl_name != '_migrations' ORDER BY type, name"
)
# A table's columns, its name bound: an added table may be named anything ("my notes").
_COLUMNS_SQL = (
    'SELECT cid, name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)'
)
_SEARCH = "decisions_fts_"  # FTS5's own tables behind the index: FTS5 defines them
_LISTED = 5  # differences named in the message
MB = 1024 * 1024
_NAMED = re.compile(r"\S+ (.+?) (?:is|was|differs)\b")


@functools.cache
def _expected() -> Schema:
    """The schema a blank log gets from this guardbot's migrations."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(db)
        objects = db.execute(_OBJECTS_SQL).fetchall()
        tables = {n: db.execute(_COLUMNS_SQL, (n,)).fetchall() for n in _tables(objects)}
        return _schema(objects, tables)
    finally:
        db.close()


def expected_columns() -> frozenset[str]:
    """``table.column`` of every ordinary table the migrations make (any backend's tables)."""
    return frozenset(name for kind, name in _expected() if kind == "column")


def _tables(objects: Iterable[Sequence[Any]]) -> list[str]:
    """The ordinary tables, whose columns are compared (FTS5 defines its own)."""
    return [
        name
        for kind, name, sql in objects
        if kind == "table" and not name.startswith(_SEARCH) and "VIRTUAL" not in sql.upper()
    ]


def _schema(
    objects: Iterable[Sequence[Any]], tables: Mapping[str, Iterable[Sequence[Any]]]
) -> Schema:
    found: Schema = {(kind, name): _normal(sql) for kind, name, sql in objects}
    for name, columns in tables.items():
        for column in columns:  # (cid, name, type, notnull, default, pk, hidden)
            found[("column", f"{name}.{column[1]}")] = repr(tuple(column[2:]))
    return found


def _normal(sql: str) -> str:
    """SQL as compared: SQLite keeps it as written, with quotes a rename adds."""
    return " ".join(sql.replace('"', "").split())


def differences(found: Schema) -> list[tuple[str, str]]:
    """(problem, what) for each object or column missing, added or changed; missing first."""
    want = _expected()
    missing = [key for key in want if key not in found]
    added = [key for key in found if key not in want]
    changed = [key for key in want if key in found and found[key] != want[key]]
    # A table whose columns differ: its columns say what changed, not its CREATE TABLE.
    columned = {n.split(".")[0] for k, n in (*missing, *added, *changed) if k == "column"}
    changed = [(k, n) for k, n in changed if not (k == "table" and n in columned)]
    return [
        *[("deleted", f"{k} {n} is missing") for k, n in missing],
        *[("inserted", f"{k} {n} was added") for k, n in added],
        *[("changed", f"{k} {n} differs from its definition") for k, n in changed],
    ]


async def schema_problem(db: aiosqlite.Connection) -> ChainReport | None:
    """The file's tables, indexes, triggers and columns against the migrations' own.

    Run after the chain verified, so a record's tampering is named before the
    trigger dropped to make it; and when reading a record failed (a table or
    column gone), to say which.
    """
    objects = list(await db.execute_fetchall(_OBJECTS_SQL))
    tables = {n: await db.execute_fetchall(_COLUMNS_SQL, (n,)) for n in _tables(objects)}
    return schema_failure(differences(_schema(objects, tables)))


def schema_failure(diffs: Sequence[tuple[str, str]]) -> ChainReport | None:
    """(problem, what) differences as verify's report, the first one named (any backend)."""
    if not diffs:
        return None
    problem, first = diffs[0]
    listed = "; ".join(what for _, what in diffs[:_LISTED])
    more = f" (and {len(diffs) - _LISTED} more)" if len(diffs) > _LISTED else ""
    message = (
        f"the schema is not the one guardbot's migrations make: {listed}{more} (the chain's "
        "records may still verify; what guards the log or what the bot relies on was altered)"
    )
    named = _NAMED.match(first)  # "<kind> <name> is/was/differs ...": a name may hold spaces
    return failure(problem, "schema", named[1] if named else first, None, message)


async def search_index_problem(db: aiosqlite.Connection) -> ChainReport | None:
    """The full-text index against the stored texts (FTS5's own integrity-check).

    The check is a write statement, refused on verify's read-only connection, and
    verify must leave the file byte-identical: it runs on a copy made with SQLite's
    backup (one consistent snapshot) in a private temporary folder, removed after.
    The chain's result must not be lost when the copy cannot be made (no room in
    ``$TMPDIR``, a file-size limit): that is a warning, not damage.
    """
    pages = await db.execute_fetchall("SELECT page_count * page_size FROM pragma_page_count, "
                                      "pragma_page_size")  # fmt: skip
    needed, where = next(iter(pages))[0], tempfile.gettempdir()
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = needed  # cannot tell: try the copy
    if free < needed:
        return not_checked(_no_copy(where, needed, f"{free / MB:.0f} MB free"))
    try:
        with tempfile.TemporaryDirectory(prefix="guardbot-verify-") as folder:
            copy = sqlite3.connect(Path(folder) / "copy.db", isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
            try:
                await db.backup(copy)
                error = await asyncio.to_thread(_fts_check, copy)
            finally:
                copy.close()
    except (sqlite3.Error, OSError) as exc:
        return not_checked(_no_copy(where, needed, str(exc)))
    if error is None:
        return None
    return failure(
        "changed", "search index", "decisions_fts", None,
        f"the search index does not match the stored texts ({error}): `guardbot logs -q` "
        "misses or misnames decisions. Rebuild it from the texts with sqlite3: INSERT INTO "
        "decisions_fts (decisions_fts) VALUES ('rebuild')",
    )  # fmt: skip


def _no_copy(where: str, needed: int, why: str) -> str:
    return (
        f"search index not checked: no copy of the log could be made in {where} (needs about "
        f"{max(1, round(needed / MB))} MB; {why}); the chain's result stands. Free space there "
        "or point TMPDIR elsewhere to check it"
    )


def _fts_check(db: sqlite3.Connection) -> str | None:
    try:
        db.execute("INSERT INTO decisions_fts (decisions_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None
