"""The triggers that keep rows the chain does not cover from being removed (m008, m009).

The chain shows a chained record edited, inserted or deleted; these tables'
rows need their own refusals. A decision's verdicts, candidates and model
calls go only with their decision (a prune); replay runs never go. Each
migration is written once here for both dialects, as they differ: SQLite
has no TRUNCATE, and its ``INSERT OR REPLACE`` deletes a row without firing
delete triggers (unless ``recursive_triggers``); PostgreSQL's TRUNCATE fires
no row trigger, only a statement-level ``BEFORE TRUNCATE`` one.
"""

from __future__ import annotations

# A decision's parts may be deleted only with their decision, by a prune: the decision is
# then gone, or covered by the checkpoint the prune wrote first in its transaction.
_PARTS = ("verdicts", "candidates", "llm_calls")
_PART_PRUNABLE = (
    "(SELECT seq FROM decisions WHERE id = old.decision_id) > "
    "(SELECT coalesce(max(through_seq), 0) FROM chain_checkpoints)"
)
M008_SQL = "".join(
    f"""
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
WHEN {_PART_PRUNABLE} BEGIN
    SELECT RAISE(ABORT, '{table} are append-only; only guardbot prune removes old rows');
END;
"""
    for table in _PARTS
) + (
    """
CREATE TRIGGER replay_runs_no_delete BEFORE DELETE ON replay_runs BEGIN
    SELECT RAISE(ABORT, 'replay_runs are append-only');
END;
"""
)
# The same on PostgreSQL (its m008), with guardbot_refuse of its m001.
PG_M008_SQL = (
    f"""
CREATE FUNCTION guardbot_prunable_part() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {_PART_PRUNABLE} THEN
        RAISE EXCEPTION '% are append-only; only guardbot prune removes old rows', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN old;
END $$;
"""
    + "".join(
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION guardbot_prunable_part();\n"
        for table in _PARTS
    )
    + "CREATE TRIGGER replay_runs_no_delete BEFORE DELETE ON replay_runs\n"
    "    FOR EACH ROW EXECUTE FUNCTION guardbot_refuse('replay_runs are append-only');\n"
)

# A replay run replaced in place (same id, new counts): refused before the insert. A
# decision's parts are hashed into their decision's chained record, so verify shows theirs.
M009_SQL = """
CREATE TRIGGER replay_runs_no_replace BEFORE INSERT ON replay_runs
WHEN EXISTS (SELECT 1 FROM replay_runs WHERE id = new.id) BEGIN
    SELECT RAISE(ABORT, 'replay_runs are append-only');
END;
"""
# Every table whose rows are never deleted, or only by a prune's DELETE: none is emptied.
TRUNCATE_REFUSED = (
    "decisions", "verdicts", "candidates", "llm_calls", "deliveries", "admin_actions",
    "replay_runs", "chain_checkpoints", "stream_events", "chain_versions", "chain_head",
)  # fmt: skip
PG_M009_SQL = "".join(
    f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}\n"
    f"    FOR EACH STATEMENT EXECUTE FUNCTION guardbot_refuse('{table} are never emptied');\n"
    for table in TRUNCATE_REFUSED
)
