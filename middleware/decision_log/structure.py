"""The log's structure besides the chain: append-only rules, schema and search index.

The chain proves what the records say; it cannot see a dropped trigger, an
index gone, a column added, or a search index that no longer matches the
texts, and each of those changes what the log does (a dropped trigger lets
rows go unnoticed until verify runs; a damaged search index hides decisions
from ``logs -q`` or makes the bot refuse every reply). `guardbot verify`
therefore also compares the file's schema objects with what the migrations
make, and the search index with the stored texts (:func:`problems`).

Migration ``m008`` closes the last tables that could lose rows without a
trigger dropped first: a decision's verdicts, candidates and model calls go
only with their decision (a prune), and replay runs never (they are outside
the chain, so nothing else would show one gone).
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
# The same on PostgreSQL, with guardbot_refuse of its m001.
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
