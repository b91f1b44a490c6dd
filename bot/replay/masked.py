"""Stored texts that were masked: findings replay cannot re-check are carried forward.

The decision log masks secrets in every text it stores (and PII when
``[log] redact_pii = true``), and keeps replies after redaction. A ``secrets``
guard re-run on ``[SECRET:openai]`` finds nothing, so without care every
message it once blocked would look "newly allowed" on every replay, and a CI
gate would fail forever. When a stored text holds the mask a guard's finding
left behind, and that guard objected when the message was logged, replay
keeps the finding and applies *today's* policy for the guard to it (block,
flag or redact, per its current ``action``), so policy changes still show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from middleware.guards.pii import MASKS
from middleware.guards.runner import apply_policy
from middleware.guards.secrets import SECRET_MARK
from middleware.pipeline.policy import ConfiguredGuard
from middleware.types import Outcome, Verdict

PII_MARKS = tuple(MASKS.values())
OBJECTED = (Outcome.BLOCK, Outcome.FLAG, Outcome.REDACT)


def hides_finding(kind: str | None, text: str) -> bool:
    """Whether ``text`` carries a mask that a guard of ``kind`` would have matched."""
    if kind == "secrets":
        return SECRET_MARK in text
    if kind == "pii":
        return any(mark in text for mark in PII_MARKS)
    return False


def carry_forward(
    verdicts: Iterable[Verdict],
    guards: Sequence[ConfiguredGuard],
    text: str,
    recorded: Iterable[Verdict],
) -> list[Verdict]:
    """``verdicts`` with masked-away findings restored from ``recorded`` under today's policy."""
    by_name = {g.config.name: g for g in guards}
    before = {(v.stage, v.guard, v.candidate_index): v for v in recorded}
    out = []
    for v in verdicts:
        g = by_name.get(v.guard)
        old = before.get((v.stage, v.guard, v.candidate_index))
        if (
            g is not None
            and old is not None
            and v.outcome is Outcome.ALLOW
            and old.outcome in OBJECTED
            and hides_finding(g.config.kind, text)
        ):
            found = old.model_copy(
                update={
                    "outcome": Outcome.BLOCK,  # what the guard said; apply_policy decides the rest
                    "blocking": False,
                    "redacted_text": text,  # the stored text is already the masked one
                    "reason": f"kept from the log (the stored text is masked): {old.reason}",
                }
            )
            v = apply_policy(g.config, found, v.latency_ms)
        out.append(v)
    return out
