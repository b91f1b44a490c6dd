"""A :class:`Decision` turned into the rows that are stored, by column name, and their hash.

Each table's columns are listed once here, in the order the content hash
covers them (:func:`content_sha256_of`): that order is the chain's format, so
it never changes for an existing column; rows themselves are dicts keyed by
column name. Values are coerced to exactly what SQLite hands back (``bool``
-> int, REAL columns -> float, non-finite floats -> NULL) so that the hash
computed here equals the one `guardbot verify` recomputes from the stored
rows. Every text passes through the :class:`TextPolicy` first. Nothing here
is SQLite's: another backend stores the same rows and chains the same hashes.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

from middleware.decision_log.chain import canonical_json, canonical_sha256, content_sha256
from middleware.decision_log.privacy import TextPolicy
from middleware.decision_log.storage import DELIVERY_STATUSES
from middleware.types import Decision, Verdict, utc_now

# Long texts come last: the content hash covers their SHA-256 columns instead
# of the texts themselves (verify checks each text against its hash), which
# keeps hashing cheap however long the messages are.
DECISION_TEXTS = ("text", "reply")
CANDIDATE_TEXTS = ("text",)
DECISION_COLUMNS = (
    "id", "created_utc", "received_utc", "platform", "channel_id", "thread_id", "user_id",
    "user_name", "message_id", "history_turns", "text_chars", "text_sha256", "action",
    "reply_chars", "reply_sha256", "blocked_by", "error", "selection_method",
    "selection_json", "total_ms", "input_guards_ms", "generation_ms", "output_guards_ms",
    "selection_ms", "saved_ms", "tokens_in", "tokens_out", "cost_usd", "config_fingerprint",
    *DECISION_TEXTS,
)  # fmt: skip
VERDICT_COLUMNS = (
    "decision_id", "position", "guard", "stage", "candidate_index", "outcome", "blocking",
    "category", "score", "confidence", "reason", "latency_ms", "model", "tokens_in",
    "tokens_out", "raw_output", "members_json",
)  # fmt: skip
CANDIDATE_COLUMNS = (
    "decision_id", "candidate_index", "text_chars", "text_sha256", "model", "temperature",
    "latency_ms", "tokens_in", "tokens_out", "score", "chosen", "safe", "error",
    *CANDIDATE_TEXTS,
)  # fmt: skip
LLM_CALL_COLUMNS = (
    "decision_id", "position", "purpose", "model", "tokens_in", "tokens_out", "latency_ms",
    "error",
)  # fmt: skip
# The hashes of a decision's verdicts, candidates and model calls, [[key, sha256], ...] per
# table (keys: position, candidate_index, position). Hashed with the decision, so verify
# can name the one row that was edited, inserted or deleted. NULL in decisions written
# before it (their content hash covers the rows themselves).
ROWS_COLUMN = "rows_sha256_json"
CHAINED_COLUMNS = ("seq", *DECISION_COLUMNS, ROWS_COLUMN, "prev_sha256", "sha256")  # as stored
# The other chained records (format v2): every column the content hash covers, in order.
DELIVERY_COLUMNS = ("decision_id", "created_utc", "status", "error")
ADMIN_COLUMNS = (
    "id", "created_utc", "actor", "platform", "channel_id", "command", "scope", "key",
    "old_json", "new_json", "allowed", "error",
)  # fmt: skip
ADMIN_HASHED = (*ADMIN_COLUMNS, "changes_setting")  # 1: this action set (or reset) scope/key
# Replay runs are not chained: a replay changes nothing.
REPLAY_COLUMNS = (
    "id", "created_utc", "actor", "config_fingerprint", "decisions_count", "changed_count",
    "duration_ms", "filters_json", "summary_json", "changes_json",
)  # fmt: skip
CHECKPOINT_COLUMNS = (
    "created_utc", "cutoff_utc", "through_seq", "through_id", "through_sha256", "pruned_count",
    "settings_json",
)  # fmt: skip
LINK_COLUMNS = ("seq", "prev_sha256", "sha256")
DECISION_HASHED = DECISION_COLUMNS[: -len(DECISION_TEXTS)]
CANDIDATE_HASHED = CANDIDATE_COLUMNS[: -len(CANDIDATE_TEXTS)]

Row = dict[str, Any]


# Each part of a decision: (kind named by verify, table, key column, hashed columns).
PARTS = (
    ("verdict", "verdicts", "position", VERDICT_COLUMNS),
    ("candidate", "candidates", "candidate_index", CANDIDATE_HASHED),
    ("llm call", "llm_calls", "position", LLM_CALL_COLUMNS),
)


def rows_sha256(*parts: Sequence[Mapping[str, Any]]) -> list[list[list[Any]]]:
    """[[key, sha256], ...] of verdicts, candidates and model calls (see :data:`ROWS_COLUMN`)."""
    return [
        [[row[key], canonical_sha256(values_of(columns)(row))] for row in rows]
        for (_, _, key, columns), rows in zip(PARTS, parts, strict=True)
    ]


def content_sha256_of(
    decision: Mapping[str, Any],
    verdicts: Sequence[Mapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]],
    llm_calls: Sequence[Mapping[str, Any]],
) -> str:
    """The content hash of a decision: its row with its rows' hashes, or (written before
    :data:`ROWS_COLUMN`) its row and every row of its parts."""
    rows = decision.get(ROWS_COLUMN)
    if rows is not None:
        return canonical_sha256([values_of(DECISION_HASHED)(decision), rows])
    return content_sha256(
        [decision[c] for c in DECISION_HASHED],
        [[v[c] for c in VERDICT_COLUMNS] for v in verdicts],
        [[c[k] for k in CANDIDATE_HASHED] for c in candidates],
        [[call[c] for c in LLM_CALL_COLUMNS] for call in llm_calls],
    )


def row_sha256(columns: tuple[str, ...], row: Mapping[str, Any]) -> str:
    """The content hash of a delivery, admin action or checkpoint: its values in column order."""
    return canonical_sha256(values_of(columns)(row))


@functools.cache
def values_of(columns: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """A row's values in column order, fetched in one C call. The tuple it returns is
    hashed as the same JSON array as a list (the chain's bytes do not change)."""
    if len(columns) == 1:  # itemgetter of one key returns the value itself
        return lambda row: (row[columns[0]],)
    return itemgetter(*columns)


def named(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Stored rows as dicts by column name (the columns share the models' field names)."""
    return [dict(zip(columns, r, strict=True)) for r in rows]


def insert_sql(table: str, columns: Sequence[str]) -> str:
    """``INSERT`` binding each column by name from a row dict."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES (:{', :'.join(columns)})"


def utc_text(moment: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so text order is time order. Naive means UTC."""
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # %-formatting the fields is 3x cheaper than isoformat() and slicing off "+00:00".
    return _UTC_TEXT % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
        moment.microsecond,
    )  # fmt: skip


_UTC_TEXT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


# ``+ 0.0`` turns -0.0 into 0.0 and leaves every other float as it is: SQLite's REAL
# (and PostgreSQL's jsonb) read -0.0 back as 0.0, so a hash over -0.0 (a score of
# round(-1e-9, 4)) would not match its own stored row and verify would cry tamper.


def real(value: float | None) -> float | None:
    if value.__class__ is float and value - value == 0.0:
        return value + 0.0  # the usual case: a finite float (inf - inf and NaN - NaN are NaN)
    if value is None:
        return None
    value = float(value)
    return value + 0.0 if _FINITE(value) else None  # SQLite stores NaN as NULL


def real0(value: float | None) -> float:
    if value.__class__ is float and value - value == 0.0:
        return value + 0.0
    return real(value) or 0.0  # None, NaN and infinities


_FINITE = math.isfinite


# An exact str from a StrEnum member: the hash's JSON and SQLite see the value.
plain = str.__str__


class EncodedDecision(NamedTuple):
    """A decision's rows, ready to insert; the writer adds ``seq`` and the chain hashes."""

    row: Row  # DECISION_COLUMNS and ROWS_COLUMN
    verdicts: list[Row]
    candidates: list[Row]
    llm_calls: list[Row]
    content_sha256: str

    @property
    def parts(self) -> tuple[list[Row], list[Row], list[Row]]:
        """The rows of its verdicts, candidates and model calls, in :data:`PARTS` order."""
        return (self.verdicts, self.candidates, self.llm_calls)


def encode(decision: Decision, policy: TextPolicy) -> EncodedDecision:
    req, t, sel = decision.request, decision.timings, decision.selection
    masked: dict[str, tuple[str | None, int, str]] = {}

    def content(text: str) -> tuple[str | None, int, str]:
        """The reply is usually also a candidate's text: mask it once."""
        found = masked.get(text)
        if found is None:
            found = masked[text] = policy.content(text)
        return found

    text, text_chars, text_sha = content(req.text)
    reply, reply_chars, reply_sha = content(decision.reply)
    selection_json = None
    if sel is not None and (sel.reasoning or sel.votes):
        sel = sel.model_copy(
            update={
                "reasoning": policy.prose(sel.reasoning),
                "votes": {policy.label(k): v for k, v in sel.votes.items()},
            }
        )
    if sel is not None:
        selection_json = sel.model_dump_json()
    did = decision.id
    row = {
        "id": did, "created_utc": utc_text(decision.created_utc),
        "received_utc": utc_text(req.received_at), "platform": req.platform,
        "channel_id": req.channel_id, "thread_id": req.thread_id, "user_id": req.user_id,
        "user_name": req.user_name, "message_id": req.message_id,
        "history_turns": len(req.history), "text_chars": text_chars, "text_sha256": text_sha,
        "action": plain(decision.action), "reply_chars": reply_chars, "reply_sha256": reply_sha,
        "blocked_by": decision.blocked_by, "error": policy.mask_opt(decision.error),
        "selection_method": sel.method if sel else None, "selection_json": selection_json,
        "total_ms": real0(t.total_ms), "input_guards_ms": real0(t.input_guards_ms),
        "generation_ms": real0(t.generation_ms), "output_guards_ms": real0(t.output_guards_ms),
        "selection_ms": real0(t.selection_ms), "saved_ms": real0(t.saved_ms),
        "tokens_in": int(decision.tokens_in), "tokens_out": int(decision.tokens_out),
        "cost_usd": real0(decision.cost_usd), "config_fingerprint": decision.config_fingerprint,
        "text": text, "reply": reply,
    }  # fmt: skip
    verdicts = [
        {
            "decision_id": did,
            "position": i,
            "guard": v.guard,
            "stage": plain(v.stage),
            "candidate_index": v.candidate_index,
            "outcome": plain(v.outcome),
            "blocking": int(v.blocking),
            # A model's answer names it: masked and cleaned like any text it wrote.
            "category": policy.mask(v.category),
            "score": real(v.score),
            "confidence": real(v.confidence),
            "reason": _reason(v, policy),
            "latency_ms": real0(v.latency_ms),
            "model": v.model,
            "tokens_in": int(v.tokens_in),
            "tokens_out": int(v.tokens_out),
            "raw_output": policy.payload(v.raw),
            "members_json": _members_json(v.members, policy) if v.members else None,
        }  # fmt: skip
        for i, v in enumerate(decision.verdicts)
    ]
    candidates = []
    for c in decision.candidates:
        c_text, c_chars, c_sha = content(c.text)
        candidates.append(
            {
                "decision_id": did,
                "candidate_index": c.index,
                "text_chars": c_chars,
                "text_sha256": c_sha,
                "model": c.model,
                "temperature": real(c.temperature),
                "latency_ms": real0(c.latency_ms),
                "tokens_in": int(c.tokens_in),
                "tokens_out": int(c.tokens_out),
                "score": real(c.score),
                "chosen": int(c.chosen),
                "safe": None if c.safe is None else int(c.safe),
                "error": policy.mask_opt(c.error),
                "text": c_text,
            }  # fmt: skip
        )
    llm_calls = [
        {
            "decision_id": did,
            "position": i,
            "purpose": call.purpose,
            "model": call.model,
            "tokens_in": int(call.tokens_in),
            "tokens_out": int(call.tokens_out),
            "latency_ms": real0(call.latency_ms),
            "error": policy.mask_opt(call.error),
        }  # fmt: skip
        for i, call in enumerate(decision.llm_calls)
    ]
    row[ROWS_COLUMN] = canonical_json(rows_sha256(verdicts, candidates, llm_calls))
    digest = content_sha256_of(row, verdicts, candidates, llm_calls)
    return EncodedDecision(row, verdicts, candidates, llm_calls, digest)


def delivery_row(decision_id: str, status: str, error: str | None, policy: TextPolicy) -> Row:
    if status not in DELIVERY_STATUSES:
        raise ValueError(f"delivery status must be one of {DELIVERY_STATUSES}, not {status!r}")
    return {
        "decision_id": decision_id, "created_utc": utc_text(utc_now()), "status": status,
        "error": policy.mask_opt(error),
    }  # fmt: skip


def _reason(v: Verdict, policy: TextPolicy) -> str:
    """A model-backed guard's reason is model prose that may quote the text; ours is a template."""
    return policy.prose(v.reason) if v.model else policy.mask(v.reason)


def _members_json(members: list[Verdict], policy: TextPolicy) -> str:
    return json.dumps([_member(m, policy) for m in members], allow_nan=False)


def _member(v: Verdict, policy: TextPolicy) -> dict[str, Any]:
    data = v.model_dump(mode="json", exclude={"redacted_text", "members"})
    data["score"], data["confidence"] = real(v.score), real(v.confidence)
    data["latency_ms"] = real0(v.latency_ms)
    data["category"] = policy.mask(v.category)
    data["reason"] = _reason(v, policy)
    data["raw"] = policy.payload(v.raw)
    if v.members:
        data["members"] = [_member(m, policy) for m in v.members]
    return data
