"""The storage contract: what the bot, admin commands, replay and the CLI ask of the log.

They depend on :class:`DecisionStore`, never on a backend, so a second one
(PostgreSQL, for several bot instances sharing one chain) is added by writing
a class with these methods and choosing it where the store is opened; none of
its users change. :class:`~middleware.decision_log.store.DecisionLog` is the
SQLite backend.

The promises every backend keeps:

- a write returns only once it is committed (audit-before-send: the bot posts a
  reply only after ``record`` returned), and concurrent writers may share one
  transaction (group commit) but each hears only about its own job;
- anything that stops writes (disk full, read-only file, lost connection) is
  :class:`LogUnavailable` with an operator's explanation; the next write tries
  again, so the log recovers when the storage does;
- a bad value in one job (:class:`ValueError`) fails that job only;
- decisions are hash-chained (:mod:`.chain`) and ``verify`` names the first
  one that was edited, inserted or deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from middleware.decision_log.chain import ChainReport
from middleware.decision_log.rows import AdminActionRow, ReplayRunRow, SettingRow, StoredDecision
from middleware.types import Decision, StreamChunk, StreamRecord, Turn

__all__ = ["DELIVERY_STATUSES", "DecisionStore", "LogUnavailable"]

DELIVERY_STATUSES = ("sent", "failed", "none")


class LogUnavailable(Exception):
    """The decision log cannot be written (or opened); the message says why and where."""


class DecisionStore(Protocol):
    """The decision log as its users see it, whatever holds the rows."""

    async def close(self) -> None:
        """Commit what was submitted, then release the storage."""

    # -- writes: each returns once committed ------------------------------------------

    async def record(self, decision: Decision) -> None:
        """Append one decision to the chain; raises LogUnavailable if it cannot be."""

    async def record_delivery(self, decision_id: str, status: str, error: str | None) -> None:
        """A delivery event (``status`` one of :data:`DELIVERY_STATUSES`)."""

    async def record_stream_chunk(self, decision_id: str, chunk: StreamChunk, text: str) -> None:
        """One chunk of a streamed reply, committed before it is shown."""

    async def record_stream_end(self, decision_id: str, record: StreamRecord) -> None:
        """How a streamed reply ended (after its decision was recorded)."""

    async def stream_of(self, decision_id: str) -> StreamRecord | None:
        """A decision's stream record, or None if its reply was not streamed."""

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Claim a platform event for this instance: True for the first claim on any
        instance sharing the log, committed before it returns (see :mod:`.claims`)."""

    async def set_setting(
        self,
        scope: str,
        key: str,
        value: Any | None,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
    ) -> Any | None:
        """Set (``value=None``: reset) a runtime setting, audited in the same transaction;
        returns the value it replaced."""

    async def record_admin_action(
        self,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
        key: str | None = None,
        scope: str | None = None,
        old: Any = None,
        new: Any = None,
        allowed: bool,
        error: str | None = None,
    ) -> None: ...

    async def record_replay_run(
        self,
        *,
        actor: str,
        config_fingerprint: str,
        decisions_count: int,
        changed_count: int,
        duration_ms: float = 0.0,
        filters: dict[str, Any] | None = None,
        summary: Any = None,
        changes: list[Any] | None = None,
    ) -> str:
        """Record one replay run; returns its id."""

    async def prune(self, cutoff: datetime) -> tuple[int, ChainReport]:
        """Remove decisions created before ``cutoff`` (keeping the chain verifiable);
        (how many, the chain afterwards). Refuses a chain that already fails."""

    # -- reads ------------------------------------------------------------------------

    async def get(self, decision_id: str) -> Decision | None: ...

    async def get_stored(self, ref: str) -> StoredDecision | None:
        """By id or unique id prefix, with hashes, text lengths and delivery events."""

    async def short_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """Each id's shortest unique prefix in the log (at least 7 characters), as git."""

    async def query(
        self,
        *,
        limit: int = 50,
        action: str | None = None,
        blocked: bool | None = None,
        guard: str | None = None,
        user_id: str | None = None,
        channel_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
    ) -> list[Decision]:
        """Newest first. ``guard``: decisions where that guard fired; ``text``: full-text."""

    async def query_stored(
        self,
        *,
        limit: int = 50,
        action: str | None = None,
        blocked: bool | None = None,
        guard: str | None = None,
        user_id: str | None = None,
        channel_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
    ) -> list[StoredDecision]: ...

    def iter_stored(
        self, *, since: datetime | None = None, until: datetime | None = None, page: int = 500
    ) -> AsyncIterator[StoredDecision]:
        """Every decision in the window, oldest first, a page at a time (for export)."""

    async def history(
        self,
        platform: str,
        channel_id: str,
        thread_id: str,
        *,
        max_turns: int,
        max_chars: int,
        before: str | None = None,
    ) -> list[Turn]:
        """Earlier messages of the thread (user and bot), oldest first."""

    async def tokens_used_since(
        self,
        since: datetime,
        *,
        user_id: str | None = None,
        channel_id: str | None = None,
        platform: str | None = None,
    ) -> int: ...

    async def settings(self) -> list[SettingRow]: ...

    async def admin_actions(self, limit: int = 50) -> list[AdminActionRow]: ...

    async def replay_runs(self, limit: int = 20) -> list[ReplayRunRow]: ...

    async def stats(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]: ...

    async def count_before(self, cutoff: datetime) -> int:
        """How many decisions ``prune`` would remove for this cutoff."""

    async def prunable(self, cutoff: datetime) -> dict[str, int]:
        """The records of each kind ``prune`` would remove for this cutoff (every kind:
        decisions, deliveries, admin actions, stream events, older checkpoints)."""

    async def verify(self) -> ChainReport:
        """Walk the hash chain in one consistent snapshot."""

    async def check_anchor(self, seq: int, sha256: str) -> str | None:
        """None if record ``seq`` still has the hash ``sha256`` noted for it (a head printed
        by an earlier verify), else what became of it."""

    async def integrity_check(self) -> str:
        """The storage engine's own consistency check; ``"ok"`` when sound."""
