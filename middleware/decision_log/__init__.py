"""The SQLite decision log: every decision on disk, committed before any reply is sent.

See :class:`DecisionLog` for the API; the schema lives in :mod:`.migrations`,
the hash chain in :mod:`.chain`, and what of a text may be stored in
:mod:`.privacy`.

The names below load their modules on first use: the writer process imports
this package's SQL modules and must not pay for pydantic and aiosqlite,
which :class:`DecisionLog` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from middleware.decision_log.errors import LogUnavailable

if TYPE_CHECKING:
    from middleware.decision_log.chain import ChainReport
    from middleware.decision_log.rows import (
        AdminActionRow,
        DeliveryRow,
        ReplayRunRow,
        SettingRow,
        StoredDecision,
    )
    from middleware.decision_log.storage import DecisionStore
    from middleware.decision_log.store import DecisionLog
    from middleware.decision_log.writer import WriterStats

_LAZY = {
    "AdminActionRow": "rows",
    "ChainReport": "chain",
    "DecisionLog": "store",
    "DeliveryRow": "rows",
    "ReplayRunRow": "rows",
    "SettingRow": "rows",
    "StoredDecision": "rows",
    "DecisionStore": "storage",
    "WriterStats": "writer",
}

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


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
