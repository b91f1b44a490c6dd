"""A decision with its streamed reply, for every reader that shows or replays one.

The log keeps how a reply was streamed apart from the decision (in
``stream_events``: each chunk is committed while the reply is shown, before
the decision is), so a decision read back has no stream until it is asked
for. ``show``, ``logs --json``, ``export``, the admin ``why`` and replay all
attach it here. A free function over the one method it needs, not a storage
method, so no backend has to grow a second way to say the same thing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from middleware.decision_log.rows import StoredDecision
from middleware.types import Decision, StreamRecord


class StreamSource(Protocol):
    """The part of a decision log (``DecisionStore``, ``DecisionLog``) this needs."""

    async def stream_of(self, decision_id: str) -> StreamRecord | None: ...


async def with_stream(log: StreamSource, decision: Decision) -> Decision:
    """``decision`` with its stream record, if it streamed (one query; none if attached)."""
    if decision.stream is not None:
        return decision
    stream = await log.stream_of(decision.id)
    return decision if stream is None else decision.model_copy(update={"stream": stream})


async def stored_with_stream(log: StreamSource, stored: StoredDecision) -> StoredDecision:
    """``stored`` (a decision with its hashes and deliveries) with its stream record."""
    decision = await with_stream(log, stored.decision)
    return stored if decision is stored.decision else replace(stored, decision=decision)
