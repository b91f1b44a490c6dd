"""Event claims: the first claim of a platform event wins, on every instance sharing the log.

Run on SQLite here and, unchanged, on PostgreSQL (``tests/middleware/postgres``):
a claim survives a restart (a retry after a crash is still not answered twice),
concurrent claims of one event give exactly one winner, and old claims are
forgotten once no retry can come.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog
from middleware.decision_log.claims import CLAIM_TTL, claim
from middleware.types import utc_now


async def test_the_first_claim_wins_even_after_a_restart(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "guardbot.db")
    try:
        assert await log.claim_event("slack", "Ev1") is True
        assert await log.claim_event("slack", "Ev1") is False
        assert await log.claim_event("discord", "Ev1") is True  # ids are per platform
    finally:
        await log.close()
    again = await DecisionLog.open(tmp_path / "guardbot.db")
    try:
        assert await again.claim_event("slack", "Ev1") is False
        assert (await again.verify()).ok  # claims are not records of the chain
    finally:
        await again.close()


async def test_concurrent_claims_of_one_event_have_one_winner(tmp_path: Path) -> None:
    one = await DecisionLog.open(tmp_path / "guardbot.db")
    two = await DecisionLog.open(tmp_path / "guardbot.db")  # a second writer on the file
    try:
        results = await asyncio.gather(
            *(log.claim_event("slack", f"Ev{n}") for n in range(20) for log in (one, two))
        )
    finally:
        await one.close()
        await two.close()
    assert results.count(True) == 20 and results.count(False) == 20


async def test_claims_older_than_a_day_are_forgotten(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "guardbot.db")
    try:
        writer = log._require_writer()  # the claim job, dated as if submitted long ago
        old = utc_now() - CLAIM_TTL - CLAIM_TTL
        assert await writer.submit(claim("slack", "EvOld", old)) is True
        assert await log.claim_event("slack", "EvOld") is True  # forgotten: claimable again
        assert await log.claim_event("slack", "EvOld") is False
    finally:
        await log.close()


async def test_an_empty_event_id_is_refused(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "guardbot.db")
    try:
        with pytest.raises(ValueError, match="event id"):
            await log.claim_event("slack", "")
    finally:
        await log.close()
