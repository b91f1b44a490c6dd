"""What `guardbot verify` checks on PostgreSQL besides the chain (SQLite's is ``..structure``).

The chain cannot see a trigger dropped, disabled or rewritten to do nothing,
a table or index gone, or a search index edited (on PostgreSQL it is a plain
table, and no trigger guards it). The expected tables, indexes, triggers and
trigger functions are read from the migrations' own SQL
(:data:`.schema.PG_MIGRATIONS`), so the check follows every new migration.
"""

from __future__ import annotations

import functools
import re

import aiosqlite

from middleware.decision_log.chain import ChainReport, failure
from middleware.decision_log.postgres.schema import PG_MIGRATIONS
from middleware.decision_log.structure import expected_columns, schema_failure

_OBJECT = re.compile(r"(CREATE (?:UNIQUE )?|DROP )(TABLE|INDEX|TRIGGER) (\w+)")
_FUNCTION = re.compile(
    r"CREATE FUNCTION (\w+)\([^;]*?AS \$\$(.*?)\$\$", re.S
)  # [^;]: in one statement
_TRIGGERED = re.compile(r"EXECUTE FUNCTION (\w+)")
_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) (.*?);", re.S)
_EVENTS = re.compile(r"^((?:BEFORE|AFTER|INSTEAD OF) )(.+?)( ON )")
_EVENT_ORDER = ("INSERT", "DELETE", "UPDATE", "TRUNCATE")  # as pg_get_triggerdef lists them
_QUALIFIED = re.compile(r" ON \w+\.")  # pg_get_triggerdef's schema, on a table not in the path
_SCHEMA = "n.nspname = current_schema()"
_PRESENT = (
    f"SELECT 'table', c.relname, '' FROM pg_class c JOIN pg_namespace n ON n.oid = "
    f"c.relnamespace WHERE c.relkind IN ('r', 'p') AND {_SCHEMA} "
    f"UNION ALL SELECT 'index', c.relname, '' FROM pg_class c JOIN pg_namespace n ON n.oid = "
    f"c.relnamespace WHERE c.relkind = 'i' AND {_SCHEMA} "
    f"UNION ALL SELECT 'trigger', t.tgname, t.tgenabled::text || ' ' || pg_get_triggerdef(t.oid) "
    f"FROM pg_trigger t JOIN pg_class c "
    f"ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE NOT t.tgisinternal AND {_SCHEMA}"
)
_COLUMNS = (
    "SELECT table_name || '.' || column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema()"
)
# The tables' columns are SQLite's (the shared queries read both); these are PostgreSQL's own.
_PG_COLUMNS = frozenset(
    ("decisions_fts.rowid", "decisions_fts.text", "decisions_fts.reply", "decisions_fts.tsv",
     "_migrations.name", "_migrations.applied_utc", "sqlite_sequence.name", "sqlite_sequence.seq")
)  # fmt: skip
_BODIES = (
    "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    f"WHERE {_SCHEMA} AND p.proname IN (%s)"
)
# The search index's rows against the decisions' texts (its tsvector follows its text).
_SEARCH_SQL = (
    "SELECT coalesce(d.seq, f.rowid) FROM decisions AS d FULL JOIN decisions_fts AS f "
    "ON f.rowid = d.seq WHERE d.seq IS NULL OR f.rowid IS NULL OR f.text IS DISTINCT FROM "
    "d.text OR f.reply IS DISTINCT FROM d.reply ORDER BY 1 LIMIT 1"
)


def _definition(name: str, rest: str) -> str:
    """A trigger's statement in a migration as pg_get_triggerdef prints it back: one
    space between words, its events in PostgreSQL's order, its table unqualified."""
    text = " ".join(rest.split())
    if m := _EVENTS.match(text):
        events = sorted(m[2].split(" OR "), key=_EVENT_ORDER.index)
        text = m[1] + " OR ".join(events) + m[3] + text[m.end() :]
    return f"CREATE TRIGGER {name} {text}"


@functools.cache
def _expected() -> tuple[frozenset[tuple[str, str]], dict[str, str], dict[str, str]]:
    """(kind, name) of every table, index and trigger the migrations leave, the body
    of each function a trigger runs, and each trigger's full definition."""
    objects: dict[tuple[str, str], None] = {}
    bodies: dict[str, str] = {}
    triggers: dict[str, str] = {}
    triggered: set[str] = set()
    for _, sql in PG_MIGRATIONS:
        for verb, kind, name in _OBJECT.findall(sql):
            if verb.startswith("DROP"):
                objects.pop((kind.lower(), name), None)
            else:
                objects[(kind.lower(), name)] = None
        bodies |= dict(_FUNCTION.findall(sql))
        triggers |= {name: _definition(name, rest) for name, rest in _TRIGGER.findall(sql)}
        triggered |= set(_TRIGGERED.findall(sql))
    bodies = {n: body for n, body in bodies.items() if n in triggered}
    return frozenset(objects), bodies, triggers


async def schema_problem(db: aiosqlite.Connection) -> ChainReport | None:
    """Tables, indexes and triggers missing; triggers added, not enabled as made ('O':
    disabled, or firing only for replication) or defined otherwise (another function,
    arguments, events or a WHEN); a trigger function whose body is not the migration's."""
    want, bodies, triggers = _expected()
    present = {(kind, name): extra for kind, name, extra in await db.execute_fetchall(_PRESENT)}
    diffs = [("deleted", f"{k} {n} is missing") for k, n in sorted(want) if (k, n) not in present]
    diffs += [
        ("inserted", f"trigger {n} was added")
        for k, n in sorted(present) if k == "trigger" and (k, n) not in want
    ]  # fmt: skip
    columns = expected_columns() | _PG_COLUMNS
    tables = {c.split(".")[0] for c in columns}
    found = {str(r[0]) for r in await db.execute_fetchall(_COLUMNS)}
    found = {c for c in found if c.split(".")[0] in tables}  # an added table is named above
    diffs += [("deleted", f"column {c} is missing") for c in sorted(columns - found)
              if ("table", c.split(".")[0]) in present]  # fmt: skip
    diffs += [("inserted", f"column {c} was added") for c in sorted(found - columns)]
    for (kind, name), extra in sorted(present.items()):
        if kind != "trigger" or name not in triggers:
            continue
        enabled, definition = str(extra).split(" ", 1)
        if enabled != "O":
            state = "disabled" if enabled == "D" else f"not enabled as made ('{enabled}')"
            diffs.append(("changed", f"trigger {name} is {state}"))
        if _QUALIFIED.sub(" ON ", definition, count=1) != triggers[name]:
            diffs.append(("changed", f"trigger {name} differs from its definition"))
    names = ", ".join(f"'{name}'" for name in sorted(bodies))
    defined = {str(name): str(body) for name, body in await db.execute_fetchall(_BODIES % names)}
    diffs += [
        ("changed", f"function {name} differs from its definition")
        for name, body in sorted(bodies.items()) if name in defined and defined[name] != body
    ]  # fmt: skip
    return schema_failure(diffs)


async def search_index_problem(db: aiosqlite.Connection) -> ChainReport | None:
    """The first decision whose search index row is missing, extra or not its texts."""
    for (seq,) in await db.execute_fetchall(_SEARCH_SQL):
        return failure(
            "changed", "search index", "decisions_fts", None,
            f"the search index does not match the stored texts (first at decision #{seq}): "
            "`guardbot logs -q` misses or misnames decisions. Rebuild it from the texts: "
            "DELETE FROM decisions_fts; INSERT INTO decisions_fts (rowid, text, reply) "
            "SELECT seq, text, reply FROM decisions",
        )  # fmt: skip
    return None
