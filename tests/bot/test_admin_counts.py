"""The numbers admins read: `status` counts the whole 24 h, `stats` tells cancelled from failed.

Real decision logs on disk; the decisions are written through the log's own
writer, older ones first, so a sample of the newest rows would miss the blocks.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from bot.app import GuardBot
from bot.config.schema import default_config_text, parse_config
from middleware.decision_log import DecisionLog
from middleware.types import Action, ChatRequest, LLMCall, utc_now
from tests.support.decision_log_support import make_decision

BLOCKED_OLDER = 60
REPLIED_NEWER = 2100  # more than the 2,000 rows `status` used to sample


async def test_status_shows_the_real_block_rate_of_the_period(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    config = parse_config(
        default_config_text().replace('path = "guardbot.db"', f'path = "{db}"'), "test"
    )
    log = await DecisionLog.open(db)
    start = utc_now() - timedelta(hours=2)
    decisions = [
        make_decision(
            f"m{i}",
            action=Action.BLOCKED if i < BLOCKED_OLDER else Action.REPLIED,
            created=start + timedelta(seconds=i),
        )
        for i in range(BLOCKED_OLDER + REPLIED_NEWER)
    ]
    await asyncio.gather(*(log.record(d) for d in decisions))  # group commit: a few batches
    bot = GuardBot(config, log, env={})
    try:
        request = ChatRequest(platform="console", channel_id="console", user_id="u1", text="")
        answer = await bot.admin(request, "status")
    finally:
        await bot.close()
    total = BLOCKED_OLDER + REPLIED_NEWER
    assert f"recent block rate: {BLOCKED_OLDER} of {total} messages blocked" in answer, answer
    assert f"({BLOCKED_OLDER / total:.1%})" in answer and "+" not in answer.split("rate:")[1]


async def test_stats_does_not_count_cancelled_candidates_as_model_errors(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    try:
        d = make_decision("best of three, first safe wins")
        errors = (
            "cancelled: another candidate passed first",  # `first`: on purpose
            "cancelled: an input guard blocked",  # a block: on purpose
            "model server answered HTTP 500",  # the model failing
        )
        d.llm_calls += [LLMCall(purpose="generation", model="gpt-x", error=e) for e in errors]
        await log.record(d)
        data = await log.stats()
    finally:
        await log.close()
    model = data["models"]["gpt-x"]
    assert (model["calls"], model["errors"], model["cancelled"]) == (4, 1, 2)
