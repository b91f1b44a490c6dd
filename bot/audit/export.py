"""Stored decisions as plain records: the `--json` of `logs` and `show`, and `export` rows.

One shape for every machine-readable output, so a script written against
`guardbot logs --json` also reads `guardbot export --format jsonl`. Texts that
were not stored appear as ``null`` next to their length and SHA-256.
"""

from __future__ import annotations

from typing import Any

from adapters.render import stream_end
from middleware.decision_log.rows import StoredDecision
from middleware.types import StreamRecord, Verdict

CSV_FIELDS = (
    "id", "created_utc", "platform", "channel_id", "thread_id", "user_id", "user_name",
    "action", "blocked_by", "error", "text", "text_chars", "reply", "verdicts", "chosen",
    "total_ms", "generation_ms", "guards_ms", "saved_ms", "tokens_in", "tokens_out", "cost_usd",
    "delivery", "config_fingerprint", "sha256",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def record(stored: StoredDecision) -> dict[str, Any]:
    d, r, t = stored.decision, stored.decision.request, stored.decision.timings
    kept = stored.text_stored
    return {
        "id": d.id,
        "seq": stored.seq,
        "created_utc": d.created_utc.isoformat(),
        "platform": r.platform,
        "channel_id": r.channel_id,
        "thread_id": r.thread_id,
        "user_id": r.user_id,
        "user_name": r.user_name,
        "message_id": r.message_id,
        "received_utc": r.received_at.isoformat(),
        "history_turns": stored.history_turns,
        "text": r.text if kept else None,
        "text_chars": stored.text_chars,
        "text_sha256": stored.text_sha256,
        "action": d.action.value,
        "reply": d.reply if kept else None,
        "reply_chars": stored.reply_chars,
        "blocked_by": d.blocked_by,
        "error": d.error,
        "verdicts": [_verdict(v) for v in d.verdicts],
        "candidates": [
            {
                "index": c.index,
                "text": c.text if kept else None,
                "chosen": c.chosen,
                "safe": c.safe,
                "model": c.model,
                "temperature": c.temperature,
                "latency_ms": c.latency_ms,
                "tokens_in": c.tokens_in,
                "tokens_out": c.tokens_out,
                "score": c.score,
                "error": c.error,
            }
            for c in d.candidates
        ],
        "selection": d.selection.model_dump(mode="json") if d.selection else None,
        "llm_calls": [c.model_dump(mode="json") for c in d.llm_calls],
        "timings": {
            "total_ms": t.total_ms,
            "generation_ms": t.generation_ms,
            "guards_ms": round(t.input_guards_ms + t.output_guards_ms, 3),
            "saved_ms": t.saved_ms,
            "input_guards_ms": t.input_guards_ms,
            "output_guards_ms": t.output_guards_ms,
            "selection_ms": t.selection_ms,
        },
        "tokens": d.tokens_in + d.tokens_out,
        "tokens_in": d.tokens_in,
        "tokens_out": d.tokens_out,
        "cost": d.cost_usd,
        "config_fingerprint": d.config_fingerprint,
        "delivery": {
            "status": d.delivery.status,
            "error": d.delivery.error,
            "events": [
                {"created_utc": e.created_utc.isoformat(), "status": e.status, "error": e.error}
                for e in stored.deliveries
            ],
        },
        "stream": stream_record(d.stream, d.blocked_by) if d.stream is not None else None,
        "sha256": stored.sha256,
        "prev_sha256": stored.prev_sha256,
    }


def _verdict(v: Verdict) -> dict[str, Any]:
    return {
        "guard": v.guard,
        "stage": v.stage.value,
        "candidate_index": v.candidate_index,
        "outcome": v.outcome.value,
        "blocking": v.blocking,
        "category": v.category,
        "score": v.score,
        "confidence": v.confidence,
        "reason": v.reason,
        "latency_ms": v.latency_ms,
        "model": v.model,
        "tokens_in": v.tokens_in,
        "tokens_out": v.tokens_out,
        "raw": v.raw,
        "members": [m.model_dump(mode="json", exclude={"redacted_text"}) for m in v.members],
    }


def stream_record(s: StreamRecord, blocked_by: str | None = None) -> dict[str, Any]:
    """A streamed reply as recorded: the windows, how it went, and each chunk with its
    output verdicts (``stop_reason`` is the sentence ``guardbot show`` prints)."""
    return {
        "chunk_chars": s.chunk_chars,
        "context_chars": s.context_chars,
        "max_hold_ms": s.max_hold_ms,
        "first_visible_ms": s.first_visible_ms,
        "last_visible_ms": s.last_visible_ms,
        "chunks_count": len(s.chunks),
        "updates": s.updates,
        "shown_chars": s.shown_chars,
        "retracted": s.retracted,
        "stopped_at_chunk": s.stopped_at_chunk,
        "stop_reason": stream_end(s, blocked_by=blocked_by),
        "note": s.note,
        "final_guards": s.final_guards,
        "delivery_errors": s.delivery_errors,
        "chunks": [
            {
                "index": c.index,
                "released": c.released,
                "chars": c.chars,
                "raw_chars": c.raw_chars,
                "shown_chars": c.shown_chars,
                "at_ms": c.at_ms,
                "verdicts": [_verdict(v) for v in c.verdicts],
            }
            for c in s.chunks
        ],
    }


def csv_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One flat row; text cells that a spreadsheet would run as a formula get a leading '."""
    chosen = next((c["index"] for c in rec["candidates"] if c["chosen"]), None)
    verdicts = "; ".join(
        f"{v['guard']}:{v['stage']}:{v['outcome']}" + (" BLOCKS" if v["blocking"] else "")
        for v in rec["verdicts"]
    )
    row = {
        **{k: rec[k] for k in CSV_FIELDS if k in rec and not isinstance(rec[k], dict | list)},
        "verdicts": verdicts,
        "chosen": chosen,
        "delivery": rec["delivery"]["status"],
        "cost_usd": rec["cost"],
        **{k: rec["timings"][k] for k in ("total_ms", "generation_ms", "guards_ms", "saved_ms")},
    }
    return {k: _cell(row.get(k)) for k in CSV_FIELDS}


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
