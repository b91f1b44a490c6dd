"""Compares a logged decision with its replay: which guards flipped, and what class of change.

Verdicts are matched by (stage, guard, candidate). A guard that exists on only
one side (added, removed, disabled, out of scope for the channel) counts as
"not run" there; "not run" against a plain non-blocking ``allow`` is no flip,
so adding a guard that passes everything changes nothing. A ``skipped``
verdict (cancelled because another guard already blocked) says nothing about
the text, so it never counts as a flip either. Score-only differences are
not flips: a verdict changes when what the guard *did* changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.replay.results import NOT_RUN, GuardFlip, Kind, ReplayResult
from middleware.types import Action, Decision, Outcome, Verdict

TEXT_PREVIEW_CHARS = 300

Key = tuple[str, str, int | None]


def _key(v: Verdict) -> Key:
    return (v.stage.value, v.guard, v.candidate_index)


def _index(verdicts: Iterable[Verdict]) -> dict[Key, Verdict]:
    # Later verdicts for the same key win; a guard is run once per text, so this is moot.
    return {_key(v): v for v in verdicts}


def _silent(v: Verdict | None) -> bool:
    """Neither ran-and-objected nor ran-and-failed: absent, skipped, or a plain allow."""
    return (
        v is None or v.outcome is Outcome.SKIPPED or (v.outcome is Outcome.ALLOW and not v.blocking)
    )


def flips(old: Iterable[Verdict], new: Iterable[Verdict]) -> list[GuardFlip]:
    before, after = _index(old), _index(new)
    found: list[GuardFlip] = []
    for key in sorted(before.keys() | after.keys(), key=_order):
        o, n = before.get(key), after.get(key)
        if o is not None and n is not None:
            if Outcome.SKIPPED in (o.outcome, n.outcome):
                continue
            if o.outcome is n.outcome and o.blocking == n.blocking:
                continue
        elif _silent(o) and _silent(n):
            continue
        stage, guard, candidate = key
        found.append(
            GuardFlip(
                guard=guard,
                stage=stage,
                candidate_index=candidate,
                old_outcome=o.outcome.value if o else NOT_RUN,
                new_outcome=n.outcome.value if n else NOT_RUN,
                old_blocking=bool(o and o.blocking),
                new_blocking=bool(n and n.blocking),
                old_score=o.score if o else None,
                new_score=n.score if n else None,
                reason=(n.reason if n else "not run under this policy (disabled or removed)")
                or (o.reason if o else ""),
            )
        )
    return found


def _order(key: Key) -> tuple[int, int, str]:
    stage, guard, candidate = key
    return (0 if stage == "input" else 1, -1 if candidate is None else candidate, guard)


def classify(old: Decision, new_action: Action, guard_flips: list[GuardFlip]) -> Kind:
    if any(f.new_outcome == Outcome.ERROR.value for f in guard_flips):
        return Kind.ERROR  # the policy's judgement of this text is unknown
    was_blocked = old.action is Action.BLOCKED
    if new_action is Action.BLOCKED and not was_blocked:
        return Kind.NEWLY_BLOCKED
    if was_blocked and new_action is not Action.BLOCKED:
        return Kind.NEWLY_ALLOWED
    if old.action is not new_action:  # error <-> replied: the model, not a guard, differs
        return Kind.OUTCOME_CHANGED
    return Kind.VERDICTS_CHANGED if guard_flips else Kind.UNCHANGED


def preview(text: str) -> str:
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1] + "…"


def compare(
    old: Decision,
    new_verdicts: list[Verdict],
    new_action: Action,
    new_blocked_by: str | None,
    *,
    fingerprint: str,
    note: str | None = None,
) -> ReplayResult:
    found = flips(old.verdicts, new_verdicts)
    kind = classify(old, new_action, found)
    error = None
    if kind is Kind.ERROR:
        error = "; ".join(
            f"{f.guard}: {f.reason}" for f in found if f.new_outcome == Outcome.ERROR.value
        )
    return _result(
        old,
        kind,
        new_action=new_action.value,
        new_blocked_by=new_blocked_by,
        flips=tuple(found),
        error=error,
        note=note,
        fingerprint=fingerprint,
    )


def failed(old: Decision, kind: Kind, error: str, *, fingerprint: str = "") -> ReplayResult:
    """A decision that could not be replayed (not stored, or the replay itself failed)."""
    return _result(old, kind, new_action=None, error=error, fingerprint=fingerprint)


def _result(old: Decision, kind: Kind, *, new_action: str | None, **found: Any) -> ReplayResult:
    """The result for ``old``: what was recorded, plus what the replay ``found``."""
    return ReplayResult(
        decision_id=old.id,
        created_utc=old.created_utc,
        platform=old.request.platform,
        channel_id=old.request.channel_id,
        user_id=old.request.user_id,
        kind=kind,
        old_action=old.action.value,
        new_action=new_action,
        old_blocked_by=old.blocked_by,
        text=preview(old.request.text),
        stream=old.stream,
        **found,
    )
