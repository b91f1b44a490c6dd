"""What one replayed decision came to, and the tally of a whole replay run.

These are the values every output form is built from (the terminal table, the
``--json`` object, the HTML page, the stored replay-run record and the chat
summary), so the forms cannot disagree about what changed. They are plain
frozen dataclasses: built once per decision, serialised at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from middleware.types import StreamRecord

NOT_RUN = "not run"  # a guard that is disabled, removed or out of scope on one side


class Kind(StrEnum):
    """The class of change; each replayed decision has exactly one."""

    UNCHANGED = "unchanged"
    NEWLY_BLOCKED = "newly_blocked"
    NEWLY_ALLOWED = "newly_allowed"
    VERDICTS_CHANGED = "verdicts_changed"
    # error <-> replied with no guard involved (``--full``: the model answers now, or fails)
    OUTCOME_CHANGED = "outcome_changed"
    ERROR = "error"
    NOT_REPLAYABLE = "not_replayable"


CHANGED_KINDS = (
    Kind.NEWLY_BLOCKED,
    Kind.NEWLY_ALLOWED,
    Kind.VERDICTS_CHANGED,
    Kind.OUTCOME_CHANGED,
)


@dataclass(frozen=True, slots=True)
class GuardFlip:
    """One guard whose verdict on one text differs between the log and the replay."""

    guard: str
    stage: str
    candidate_index: int | None
    old_outcome: str  # an Outcome value, or NOT_RUN
    new_outcome: str
    old_blocking: bool
    new_blocking: bool
    old_score: float | None
    new_score: float | None
    reason: str  # the new verdict's reason (the old one's when the guard no longer runs)

    @property
    def direction(self) -> str:
        """``to_block``, ``to_allow`` or ``other`` (e.g. allow -> flag), for the chart."""
        if self.new_blocking and not self.old_blocking:
            return "to_block"
        if self.old_blocking and not self.new_blocking:
            return "to_allow"
        return "other"

    def to_json(self) -> dict[str, Any]:
        return {
            "guard": self.guard,
            "stage": self.stage,
            "candidate_index": self.candidate_index,
            "old_outcome": self.old_outcome,
            "new_outcome": self.new_outcome,
            "old_blocking": self.old_blocking,
            "new_blocking": self.new_blocking,
            "old_score": self.old_score,
            "new_score": self.new_score,
            "direction": self.direction,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ReplayResult:
    decision_id: str
    created_utc: datetime
    platform: str
    channel_id: str
    user_id: str
    kind: Kind
    old_action: str
    new_action: str | None  # None when not replayed (error, not replayable)
    old_blocked_by: str | None = None
    new_blocked_by: str | None = None
    flips: tuple[GuardFlip, ...] = ()
    text: str = ""  # the recorded message, shortened; hostile, escape it when shown
    error: str | None = None  # why it could not be replayed (error / not_replayable)
    note: str | None = None  # a caveat about the comparison (e.g. output not screened)
    fingerprint: str = ""  # effective config fingerprint used for this decision
    stream: StreamRecord | None = None  # how the reply was streamed then (the report shows it)

    @property
    def changed(self) -> bool:
        return self.kind in CHANGED_KINDS

    def same_as_key(self) -> tuple[Any, ...]:
        """What two results share when they read the same in a report (ids and times aside)."""
        return (
            self.kind, self.old_action, self.new_action, self.old_blocked_by,
            self.new_blocked_by, self.flips, self.text, self.error, self.note,
            None if self.stream is None else _stream_key(self.stream),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.decision_id,
            "created_utc": self.created_utc.isoformat(),
            "platform": self.platform,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "kind": self.kind.value,
            "old_action": self.old_action,
            "new_action": self.new_action,
            "old_blocked_by": self.old_blocked_by,
            "new_blocked_by": self.new_blocked_by,
            "flips": [f.to_json() for f in self.flips],
            "text": self.text,
            "error": self.error,
            "note": self.note,
            "config_fingerprint": self.fingerprint,
        }


def _stream_key(s: StreamRecord) -> tuple[Any, ...]:
    """What a report shows of a stream, timings aside: how it ended, and each chunk's fate
    and verdicts (a grouped row shows the first result's chunk table for all of them)."""
    chunks = tuple(
        (c.released, tuple((v.guard, v.outcome.value, v.blocking) for v in c.verdicts))
        for c in s.chunks
    )
    return (s.shown_chars, s.retracted, s.stopped_at_chunk, s.note, chunks)


SUMMARY_FIELDS = (
    "selected",
    "replayed",
    "unchanged",
    "newly_blocked",
    "newly_allowed",
    "verdicts_changed",
    "outcome_changed",
    "errors",
    "not_replayable",
)


@dataclass(slots=True)
class Tally:
    """Counts and the notable results, filled in as results arrive (progress bar, Ctrl-C)."""

    selected: int = 0
    counts: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    notable: list[ReplayResult] = field(default_factory=list)  # everything but unchanged
    flips_by_guard: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, result: ReplayResult) -> None:
        self.counts[result.kind] += 1
        if result.kind is not Kind.UNCHANGED:
            self.notable.append(result)
        for flip in result.flips:
            per_guard = self.flips_by_guard.setdefault(
                flip.guard, {"to_block": 0, "to_allow": 0, "other": 0}
            )
            per_guard[flip.direction] += 1

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def changed(self) -> int:
        return sum(self.counts[k] for k in CHANGED_KINDS)

    def summary(self) -> dict[str, int]:
        c = self.counts
        return {
            "selected": self.selected,
            "replayed": self.done - c[Kind.NOT_REPLAYABLE] - c[Kind.ERROR],
            "unchanged": c[Kind.UNCHANGED],
            "newly_blocked": c[Kind.NEWLY_BLOCKED],
            "newly_allowed": c[Kind.NEWLY_ALLOWED],
            "verdicts_changed": c[Kind.VERDICTS_CHANGED],
            "outcome_changed": c[Kind.OUTCOME_CHANGED],
            "errors": c[Kind.ERROR],
            "not_replayable": c[Kind.NOT_REPLAYABLE],
        }

    def grouped_notable(self) -> list[list[ReplayResult]]:
        """The notable results, identical ones (same text, change and reasons) together,
        in the order of each group's first decision: 142 copies of one spam line are one row."""
        groups: dict[tuple[Any, ...], list[ReplayResult]] = {}
        for r in self.sorted_notable():
            groups.setdefault(r.same_as_key(), []).append(r)
        return list(groups.values())

    def sorted_notable(self) -> list[ReplayResult]:
        """Chronological, so reports do not depend on which worker finished first."""
        return sorted(self.notable, key=lambda r: (r.created_utc, r.decision_id))


@dataclass(slots=True)
class RunReport:
    """A finished (or interrupted) replay run, as every output form sees it."""

    run_id: str
    created_utc: datetime
    actor: str
    mode: str
    config_fingerprint: str
    config_source: str
    filters: dict[str, Any]
    tally: Tally
    duration_ms: float
    interrupted: bool = False
    limited: bool = False  # the selection hit --limit; older matches were not replayed

    def to_json(self) -> dict[str, Any]:
        notable = self.tally.sorted_notable()
        return {
            "run_id": self.run_id,
            "created_utc": self.created_utc.isoformat(),
            "actor": self.actor,
            "mode": self.mode,
            "config_fingerprint": self.config_fingerprint,
            "config_source": self.config_source,
            "filters": self.filters,
            **self.tally.summary(),
            "changed": self.tally.changed,
            "interrupted": self.interrupted,
            "limited": self.limited,
            "duration_ms": round(self.duration_ms, 3),
            "flips_by_guard": self.tally.flips_by_guard,
            "changes": [r.to_json() for r in notable if r.kind is not Kind.NOT_REPLAYABLE],
            "not_replayable_ids": [r.decision_id for r in notable if r.kind is Kind.NOT_REPLAYABLE],
        }
