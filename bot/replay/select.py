"""Chooses the logged decisions a replay re-runs, through the decision log's query API.

Filters are the log's own (time window, channel, user, action) plus explicit
ids. The log answers newest first; replay keeps the newest ``limit`` matches
and processes them oldest first, and says so when the limit cut the window
short, because a CI gate that silently looked at only part of last week's
traffic would be worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from middleware.decision_log.rows import StoredDecision
from middleware.decision_log.storage import DecisionStore
from middleware.types import Decision

DEFAULT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Logged:
    """A decision as the log returned it, with what replay must know about its storage."""

    decision: Decision
    text_stored: bool


class SelectionError(ValueError):
    """The selection cannot be made: an id that is not in the log (``not_found``), or an
    ambiguous id prefix (the message lists the candidates)."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """Which logged decisions to replay (every filter optional; they combine)."""

    since: datetime | None = None
    until: datetime | None = None
    channel_id: str | None = None
    user_id: str | None = None
    action: str | None = None
    ids: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "channel": self.channel_id,
            "user": self.user_id,
            "action": self.action,
            "ids": list(self.ids),
            "limit": self.limit,
        }

    def matches(self, d: Decision) -> bool:
        r = d.request
        return (
            (self.since is None or d.created_utc >= self.since)
            and (self.until is None or d.created_utc < self.until)
            and (self.channel_id is None or r.channel_id == self.channel_id)
            and (self.user_id is None or r.user_id == self.user_id)
            and (self.action is None or d.action.value == self.action)
        )


def as_logged(found: StoredDecision) -> Logged:
    return Logged(found.decision, found.text_stored)


async def select(log: DecisionStore, sel: DecisionFilter) -> tuple[list[Logged], bool]:
    """(decisions oldest first, whether ``limit`` cut the selection short)."""
    if sel.ids:
        found: list[Logged] = []
        for ref in dict.fromkeys(sel.ids):  # keep order, drop repeats
            try:
                hit = await log.get_stored(ref)
            except ValueError as exc:  # an ambiguous id prefix
                raise SelectionError(str(exc)) from None
            if hit is None:
                raise SelectionError(f"no decision with id {ref!r} in the log", not_found=True)
            item = as_logged(hit)
            if sel.matches(item.decision):
                found.append(item)
        found.sort(key=lambda i: (i.decision.created_utc, i.decision.id))
        limited = len(found) > sel.limit
        return found[: sel.limit], limited
    rows = await log.query_stored(
        action=sel.action,
        user_id=sel.user_id,
        channel_id=sel.channel_id,
        since=sel.since,
        until=sel.until,
        limit=sel.limit + 1,  # one extra row tells us whether the limit cut anything
    )
    limited = len(rows) > sel.limit
    newest = [as_logged(r) for r in rows[: sel.limit]]
    return newest[::-1], limited
