"""Plain rows the log hands back besides decisions: settings, admin actions, replays.

They are small frozen dataclasses rather than pydantic models because they
are read far more often than validated, and their values were validated when
they were written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from middleware.types import Decision


@dataclass(frozen=True, slots=True)
class SettingRow:
    scope: str  # "global" or "channel:<platform>:<id>"
    key: str
    value: Any  # JSON-decoded
    updated_utc: datetime
    actor: str


@dataclass(frozen=True, slots=True)
class AdminActionRow:
    id: str
    created_utc: datetime
    actor: str
    platform: str
    channel_id: str
    command: str
    key: str | None
    scope: str | None
    old: Any
    new: Any
    allowed: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class ReplayRunRow:
    id: str
    created_utc: datetime
    actor: str
    config_fingerprint: str
    decisions_count: int
    changed_count: int
    duration_ms: float
    filters: dict[str, Any]
    summary: Any
    changes: list[Any]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    created_utc: datetime
    status: str
    error: str | None


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision as stored: the rebuilt :class:`Decision` plus what only the log knows."""

    decision: Decision
    seq: int
    text_stored: bool  # false when [log] store_text = false (only hash and length kept)
    text_sha256: str
    text_chars: int
    reply_sha256: str
    reply_chars: int
    history_turns: int
    sha256: str
    prev_sha256: str
    deliveries: list[DeliveryRow] = field(default_factory=list)
