"""Stored rows turned back into :class:`Decision` objects (for `show`, replay and admins).

The inverse of :func:`.records.encode`, as far as the stored form allows: texts that
were not stored come back as empty strings (``StoredDecision.text_stored``
says so) and the request's history is not stored (it is the log itself), only
how many turns were given.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    CHAINED_COLUMNS,
    LLM_CALL_COLUMNS,
    VERDICT_COLUMNS,
)
from middleware.decision_log.rows import DeliveryRow, StoredDecision
from middleware.types import (
    Action,
    Candidate,
    ChatRequest,
    Decision,
    Delivery,
    LLMCall,
    Selection,
    Timings,
    Verdict,
)

DECISION_SELECT = ", ".join(CHAINED_COLUMNS)
VERDICT_SELECT = ", ".join(VERDICT_COLUMNS)
CANDIDATE_SELECT = ", ".join(CANDIDATE_COLUMNS)
LLM_CALL_SELECT = ", ".join(LLM_CALL_COLUMNS)

Row = Sequence[Any]


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def group(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Child rows by decision id (their first column), in stored order."""
    out: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row)
    return out


def stored_decision(
    row: Row,
    verdicts: list[Row],
    candidates: list[Row],
    llm_calls: list[Row],
    deliveries: list[Row],
) -> StoredDecision:
    d = dict(zip(CHAINED_COLUMNS, row, strict=True))
    request = ChatRequest(
        platform=d["platform"],
        channel_id=d["channel_id"],
        thread_id=d["thread_id"],
        user_id=d["user_id"],
        user_name=d["user_name"],
        message_id=d["message_id"],
        text=d["text"] or "",
        received_at=parse_utc(d["received_utc"]),
    )
    selection = Selection.model_validate_json(d["selection_json"]) if d["selection_json"] else None
    delivery_rows = [DeliveryRow(parse_utc(r[1]), r[2], r[3]) for r in deliveries]
    latest = delivery_rows[-1] if delivery_rows else None
    decision = Decision(
        id=d["id"],
        created_utc=parse_utc(d["created_utc"]),
        request=request,
        action=Action(d["action"]),
        reply=d["reply"] or "",
        blocked_by=d["blocked_by"],
        error=d["error"],
        verdicts=[_verdict(v) for v in named(VERDICT_COLUMNS, verdicts)],
        candidates=[_candidate(c) for c in named(CANDIDATE_COLUMNS, candidates)],
        selection=selection,
        llm_calls=[LLMCall.model_validate(c) for c in named(LLM_CALL_COLUMNS, llm_calls)],
        timings=Timings.model_validate(d),
        tokens_in=d["tokens_in"],
        tokens_out=d["tokens_out"],
        cost_usd=d["cost_usd"],
        config_fingerprint=d["config_fingerprint"],
        delivery=Delivery(status=latest.status, error=latest.error) if latest else Delivery(),
    )
    return StoredDecision(
        decision=decision,
        seq=d["seq"],
        text_stored=d["text"] is not None,
        text_sha256=d["text_sha256"],
        text_chars=d["text_chars"],
        reply_sha256=d["reply_sha256"],
        reply_chars=d["reply_chars"],
        history_turns=d["history_turns"],
        sha256=d["sha256"],
        prev_sha256=d["prev_sha256"],
        deliveries=delivery_rows,
    )


def named(columns: Sequence[str], rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Rows as dicts by column name (the stored columns share the model's field names)."""
    return [dict(zip(columns, r, strict=True)) for r in rows]


def _verdict(v: dict[str, Any]) -> Verdict:
    members = json.loads(v["members_json"]) if v["members_json"] else []
    return Verdict.model_validate({**v, "raw": v["raw_output"], "members": members})


def _candidate(c: dict[str, Any]) -> Candidate:
    return Candidate.model_validate({**c, "index": c["candidate_index"], "text": c["text"] or ""})
