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
    Stage,
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
        verdicts=[_verdict(r) for r in verdicts],
        candidates=[_candidate(r) for r in candidates],
        selection=selection,
        llm_calls=[_llm_call(r) for r in llm_calls],
        timings=Timings(
            total_ms=d["total_ms"],
            input_guards_ms=d["input_guards_ms"],
            generation_ms=d["generation_ms"],
            output_guards_ms=d["output_guards_ms"],
            selection_ms=d["selection_ms"],
            saved_ms=d["saved_ms"],
        ),
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


def _verdict(r: Row) -> Verdict:
    v = dict(zip(VERDICT_COLUMNS, r, strict=True))
    members = json.loads(v["members_json"]) if v["members_json"] else []
    return Verdict(
        guard=v["guard"],
        stage=Stage(v["stage"]),
        outcome=v["outcome"],
        blocking=bool(v["blocking"]),
        category=v["category"],
        score=v["score"],
        confidence=v["confidence"],
        reason=v["reason"],
        latency_ms=v["latency_ms"],
        raw=v["raw_output"],
        candidate_index=v["candidate_index"],
        model=v["model"],
        tokens_in=v["tokens_in"],
        tokens_out=v["tokens_out"],
        members=[Verdict.model_validate(m) for m in members],
    )


def _candidate(r: Row) -> Candidate:
    c = dict(zip(CANDIDATE_COLUMNS, r, strict=True))
    return Candidate(
        index=c["candidate_index"],
        text=c["text"] or "",
        model=c["model"],
        temperature=c["temperature"],
        latency_ms=c["latency_ms"],
        tokens_in=c["tokens_in"],
        tokens_out=c["tokens_out"],
        score=c["score"],
        chosen=bool(c["chosen"]),
        safe=None if c["safe"] is None else bool(c["safe"]),
        error=c["error"],
    )


def _llm_call(r: Row) -> LLMCall:
    c = dict(zip(LLM_CALL_COLUMNS, r, strict=True))
    return LLMCall(
        purpose=c["purpose"],
        model=c["model"],
        tokens_in=c["tokens_in"],
        tokens_out=c["tokens_out"],
        latency_ms=c["latency_ms"],
        error=c["error"],
    )
