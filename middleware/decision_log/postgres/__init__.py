"""The PostgreSQL backend of the decision log: one chain shared by several bot instances.

:func:`open_store` is where a backend is chosen: a ``postgresql://`` target
opens :class:`PostgresLog`, anything else the SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from middleware.decision_log.postgres.store import PostgresLog
from middleware.decision_log.postgres.url import PgTarget, is_postgres_url, target_from
from middleware.decision_log.storage import LogUnavailable
from middleware.decision_log.store import DecisionLog

__all__ = ["PgTarget", "PostgresLog", "is_postgres_url", "open_store", "target_from"]


async def open_store(
    target: str | Path,
    *,
    store_text: bool = True,
    redact_pii: bool = False,
    read_only: bool = False,
    password_env: str = "PGPASSWORD",
    env: Mapping[str, str] | None = None,
) -> DecisionLog:
    """The decision log at ``target``: a ``postgresql://`` URL or a SQLite file path.

    Both backends are :class:`DecisionLog`s (PostgreSQL's adds what a shared
    database needs); callers should depend on
    :class:`~middleware.decision_log.storage.DecisionStore` only.
    """
    if isinstance(target, str) and is_postgres_url(target):
        try:
            pg = target_from(target, os.environ if env is None else env, password_env)
        except ValueError as exc:
            raise LogUnavailable(str(exc)) from None
        return await PostgresLog.open_url(
            pg, store_text=store_text, redact_pii=redact_pii, read_only=read_only
        )
    return await DecisionLog.open(
        target, store_text=store_text, redact_pii=redact_pii, read_only=read_only
    )
