"""The SQLite decision log: every decision on disk, committed before any reply is sent.

See :class:`DecisionLog` for the API; the schema lives in :mod:`.migrations`,
the hash chain in :mod:`.chain`, and what of a text may be stored in
:mod:`.privacy`.
"""

from middleware.decision_log.chain import ChainReport
from middleware.decision_log.errors import LogUnavailable
from middleware.decision_log.rows import (
    AdminActionRow,
    DeliveryRow,
    ReplayRunRow,
    SettingRow,
    StoredDecision,
)
from middleware.decision_log.store import DecisionLog
from middleware.decision_log.writer import WriterStats

__all__ = [
    "AdminActionRow",
    "ChainReport",
    "DecisionLog",
    "DeliveryRow",
    "LogUnavailable",
    "ReplayRunRow",
    "SettingRow",
    "StoredDecision",
    "WriterStats",
]
