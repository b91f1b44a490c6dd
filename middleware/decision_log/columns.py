"""The stored columns of each table, in the order rows are built, hashed and inserted.

Kept apart from :mod:`.encode` (which needs pydantic) because the writer
process inserts rows with these statements and imports only the standard
library and this package's SQL modules, so that it starts in milliseconds.
"""

from __future__ import annotations

# Long texts come last in these tuples: the content hash covers their SHA-256
# columns instead of the texts themselves (verify checks each text against its
# hash), which keeps hashing cheap however long the messages are.
DECISION_COLUMNS = (
    "id", "created_utc", "received_utc", "platform", "channel_id", "thread_id", "user_id",
    "user_name", "message_id", "history_turns", "text_chars", "text_sha256", "action",
    "reply_chars", "reply_sha256", "blocked_by", "error", "selection_method",
    "selection_json", "total_ms", "input_guards_ms", "generation_ms", "output_guards_ms",
    "selection_ms", "saved_ms", "tokens_in", "tokens_out", "cost_usd", "config_fingerprint",
    "text", "reply",
)  # fmt: skip
VERDICT_COLUMNS = (
    "decision_id", "position", "guard", "stage", "candidate_index", "outcome", "blocking",
    "category", "score", "confidence", "reason", "latency_ms", "model", "tokens_in",
    "tokens_out", "raw_output", "members_json",
)  # fmt: skip
CANDIDATE_COLUMNS = (
    "decision_id", "candidate_index", "text_chars", "text_sha256", "model", "temperature",
    "latency_ms", "tokens_in", "tokens_out", "score", "chosen", "safe", "error", "text",
)  # fmt: skip
DECISION_TEXTS = 2  # trailing (text, reply) of a decision row
CANDIDATE_TEXTS = 1  # trailing text of a candidate row
LLM_CALL_COLUMNS = (
    "decision_id", "position", "purpose", "model", "tokens_in", "tokens_out", "latency_ms",
    "error",
)  # fmt: skip
ADMIN_COLUMNS = (
    "id", "created_utc", "actor", "platform", "channel_id", "command", "scope", "key",
    "old_json", "new_json", "allowed", "error",
)  # fmt: skip
REPLAY_COLUMNS = (
    "id", "created_utc", "actor", "config_fingerprint", "decisions_count", "changed_count",
    "duration_ms", "filters_json", "summary_json", "changes_json",
)  # fmt: skip


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


INSERT_DECISION = insert_sql("decisions", ("seq", *DECISION_COLUMNS, "prev_sha256", "sha256"))
INSERT_VERDICT = insert_sql("verdicts", VERDICT_COLUMNS)
INSERT_CANDIDATE = insert_sql("candidates", CANDIDATE_COLUMNS)
INSERT_LLM_CALL = insert_sql("llm_calls", LLM_CALL_COLUMNS)
INSERT_ADMIN = insert_sql("admin_actions", ADMIN_COLUMNS)
INSERT_REPLAY = insert_sql("replay_runs", REPLAY_COLUMNS)
INSERT_FTS = "INSERT INTO decisions_fts (rowid, text, reply) VALUES (?, ?, ?)"
INSERT_DELIVERY = insert_sql("deliveries", ("decision_id", "created_utc", "status", "error"))
