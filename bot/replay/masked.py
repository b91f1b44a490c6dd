"""Findings replay cannot re-check are carried forward from the log, under today's policy.

The decision log masks secrets in every text it stores (and PII when
``[log] redact_pii = true``), and keeps replies after redaction. A ``secrets``
guard re-run on ``[SECRET:openai]`` finds nothing, so without care every
message it once blocked would look "newly allowed" on every replay, and a CI
gate would fail forever. When a stored text holds the mask a guard's finding
left behind, and that guard objected when the message was logged, replay
keeps the finding and applies *today's* policy for the guard to it (block,
flag or redact, per its current ``action``), so policy changes still show.

A streamed reply stopped at a chunk is the other case: the blocked chunk's
text was never shown, so it was never recorded, and nothing can re-judge it.
Its recorded verdicts are kept the same way (:func:`keep_blocked_chunk`);
when the guard that stopped it no longer judges chunks, the replay cannot say
what would have followed, and says so.
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
MASKED_WHY = "kept from the log (the stored text is masked)"
CHUNK_WHY = "kept from the log: the blocked chunk's text was not recorded"


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
            # the stored text is already the masked one
            v = _reapply(g, old, MASKED_WHY, text, v.latency_ms)
        out.append(v)
    return out


class ChunkNotReplayable(Exception):
    """The guard that stopped a stream at a chunk no longer judges chunks: what that chunk
    said, and what followed it, was never recorded."""


def keep_blocked_chunk(
    guards: Sequence[ConfiguredGuard], recorded: Sequence[Verdict]
) -> list[Verdict]:
    """The recorded verdicts of the chunk that stopped a stream, under today's ``guards``
    (the ``stream = "chunk"`` ones): an objection is re-applied per the guard's current
    ``action`` and an error per its ``on_error``; a guard not run on the chunk then (added
    since) has no verdict. Raises :class:`ChunkNotReplayable` when nothing blocks the chunk
    now because a guard that blocked it is gone (removed, disabled, out of scope, or now
    ``stream = "final"``)."""
    by_name = {g.config.name: g for g in guards}
    kept = []
    for old in recorded:
        g = by_name.get(old.guard)
        if g is None:
            continue
        if old.outcome in OBJECTED:
            # The chunk's text is unknown: a redaction keeps an empty mask so that today's
            # `action = "redact"` still reads as a redaction, not as a block.
            v = _reapply(g, old, CHUNK_WHY, old.redacted_text or "", old.latency_ms)
        elif old.outcome is Outcome.ERROR:
            v = apply_policy(
                g.config, old.model_copy(update={"reason": _why(CHUNK_WHY, old)}), old.latency_ms
            )
        else:  # allow / skipped: nothing to re-apply
            v = old.model_copy()
        kept.append(v)
    if not any(v.blocking for v in kept):
        gone = [v.guard for v in recorded if v.blocking and v.guard not in by_name]
        if gone:
            raise ChunkNotReplayable(
                f"{', '.join(gone)} stopped the stream at a chunk whose text was not recorded, "
                "and no longer judges chunks: what would have been shown is unknown "
                "(replay with --full to generate the reply again)"
            )
    return kept


def _why(why: str, old: Verdict) -> str:
    return f"{why}: {old.reason}" if old.reason else why


def _reapply(
    g: ConfiguredGuard, old: Verdict, why: str, redacted_text: str, latency_ms: float
) -> Verdict:
    """A recorded objection as what ``g`` does with it today (block, flag or redact)."""
    found = old.model_copy(
        update={
            "outcome": Outcome.BLOCK,  # what the guard said; apply_policy decides the rest
            "blocking": False,
            "redacted_text": redacted_text,
            "reason": _why(why, old),
        }
    )
    return apply_policy(g.config, found, latency_ms)
