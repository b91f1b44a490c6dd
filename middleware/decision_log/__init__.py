"""The decision log: every decision on disk, committed before any reply is sent.

Its users depend on :class:`DecisionStore` (:mod:`.storage`); :class:`DecisionLog`
is the SQLite backend (:mod:`.store`), written by one in-process writer
(:mod:`.writer`). The schema lives in :mod:`.migrations`, the hash chain in
:mod:`.chain`, the stored rows in :mod:`.records`, and what of a text may be
stored in :mod:`.privacy`.
"""

from middleware.decision_log.chain import ChainReport
from middleware.decision_log.rows import (
    AdminActionRow,
    DeliveryRow,
    ReplayRunRow,
    SettingRow,
    StoredDecision,
)
from middleware.decision_log.storage import DecisionStore, LogUnavailable
from middleware.decision_log.store import DecisionLog
from middleware.decision_log.writer import WriterStats

__all__ = [
    "AdminActionRow",
    "ChainReport",
    "DecisionLog",
    "DecisionStore",
    "DeliveryRow",
    "LogUnavailable",
    "ReplayRunRow",
    "SettingRow",
    "StoredDecision",
    "WriterStats",
]
