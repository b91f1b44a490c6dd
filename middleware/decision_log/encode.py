"""A :class:`Decision` turned into the rows that are stored, and the hash of those rows.

Values are coerced to exactly what SQLite hands back (``bool`` -> int, REAL
columns -> float, non-finite floats -> NULL) so that the content hash computed
here equals the one `guardbot verify` recomputes from the stored rows. Every
text passes through the :class:`TextPolicy` first.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, NamedTuple

from middleware.decision_log.chain import content_sha256
from middleware.decision_log.columns import CANDIDATE_TEXTS, DECISION_TEXTS
from middleware.decision_log.privacy import TextPolicy
from middleware.types import Decision, Verdict


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


def real(value: float | None) -> float | None:
    if value.__class__ is float and value - value == 0.0:
        return value  # the usual case: a finite float (inf - inf and NaN - NaN are NaN)
    if value is None:
        return None
    value = float(value)
    return value if _FINITE(value) else None  # SQLite stores NaN as NULL


def real0(value: float | None) -> float:
    if value.__class__ is float and value - value == 0.0:
        return value
    if value is None:
        return 0.0
    value = float(value)
    return value if _FINITE(value) else 0.0


_FINITE = math.isfinite


def flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


Row = tuple[Any, ...]
# An exact str from a StrEnum member (rows cross to the writer process as
# marshal data, which refuses subclasses); a C slot, unlike the `.value` property.
plain = str.__str__


class EncodedDecision(NamedTuple):
    """Plain tuples of plain values: the writer process receives them as they are."""

    row: Row  # DECISION_COLUMNS, without seq and the chain hashes
    verdicts: list[Row]
    candidates: list[Row]
    llm_calls: list[Row]
    content_sha256: str


def encode(decision: Decision, policy: TextPolicy) -> EncodedDecision:
    req, t, sel = decision.request, decision.timings, decision.selection
    content = _Memo(policy)  # the reply is usually also a candidate's text: mask it once
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
    row = (
        did, utc_text(decision.created_utc), utc_text(req.received_at), req.platform,
        req.channel_id, req.thread_id, req.user_id, req.user_name, req.message_id,
        len(req.history), text_chars, text_sha, plain(decision.action), reply_chars, reply_sha,
        decision.blocked_by, policy.mask_opt(decision.error), sel.method if sel else None,
        selection_json, real0(t.total_ms), real0(t.input_guards_ms), real0(t.generation_ms),
        real0(t.output_guards_ms), real0(t.selection_ms), real0(t.saved_ms),
        int(decision.tokens_in), int(decision.tokens_out), real0(decision.cost_usd),
        decision.config_fingerprint, text, reply,
    )  # fmt: skip
    verdicts = [
        (
            did,
            i,
            v.guard,
            plain(v.stage),
            v.candidate_index,
            plain(v.outcome),
            int(v.blocking),
            v.category,
            real(v.score),
            real(v.confidence),
            _reason(v, policy),
            real0(v.latency_ms),
            v.model,
            int(v.tokens_in),
            int(v.tokens_out),
            policy.payload(v.raw),
            _members_json(v.members, policy) if v.members else None,
        )  # fmt: skip
        for i, v in enumerate(decision.verdicts)
    ]
    candidates = []
    for c in decision.candidates:
        c_text, c_chars, c_sha = content(c.text)
        candidates.append(
            (
                did,
                c.index,
                c_chars,
                c_sha,
                c.model,
                real(c.temperature),
                real0(c.latency_ms),
                int(c.tokens_in),
                int(c.tokens_out),
                real(c.score),
                int(c.chosen),
                flag(c.safe),
                policy.mask_opt(c.error),
                c_text,
            )  # fmt: skip
        )
    llm_calls = [
        (
            did,
            i,
            call.purpose,
            call.model,
            int(call.tokens_in),
            int(call.tokens_out),
            real0(call.latency_ms),
            policy.mask_opt(call.error),
        )  # fmt: skip
        for i, call in enumerate(decision.llm_calls)
    ]
    digest = content_sha256(
        row[:-DECISION_TEXTS], verdicts, [c[:-CANDIDATE_TEXTS] for c in candidates], llm_calls
    )
    return EncodedDecision(row, verdicts, candidates, llm_calls, digest)


class _Memo:
    def __init__(self, policy: TextPolicy) -> None:
        self.policy = policy
        self.seen: dict[str, tuple[str | None, int, str]] = {}

    def __call__(self, text: str) -> tuple[str | None, int, str]:
        found = self.seen.get(text)
        if found is None:
            found = self.seen[text] = self.policy.content(text)
        return found


def _reason(v: Verdict, policy: TextPolicy) -> str:
    """A model-backed guard's reason is model prose that may quote the text; ours is a template."""
    return policy.prose(v.reason) if v.model else policy.mask(v.reason)


def _members_json(members: list[Verdict], policy: TextPolicy) -> str:
    return json.dumps([_member(m, policy) for m in members], allow_nan=False)


def _member(v: Verdict, policy: TextPolicy) -> dict[str, Any]:
    data = v.model_dump(mode="json", exclude={"redacted_text", "members"})
    data["score"], data["confidence"] = real(v.score), real(v.confidence)
    data["latency_ms"] = real0(v.latency_ms)
    data["reason"] = _reason(v, policy)
    data["raw"] = policy.payload(v.raw)
    if v.members:
        data["members"] = [_member(m, policy) for m in v.members]
    return data
