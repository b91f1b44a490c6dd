"""Daily token budgets through the whole bot: GuardBot + a real SQLite log + the stub LLM.

Tokens are counted from the decision log itself, so a refusal is proven by
the stub receiving no request for the refused message and by the refusal
being on record like any other decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog
from middleware.pipeline.budget import check_budget, day_start
from middleware.types import Action, ChatRequest
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.selection_support import config_text

SORRY = "Daily limit reached, see you tomorrow."


def budget_config(stub: StubOpenAI, db: Path, budget: str) -> str:
    extra = f'[budget]\n{budget}\nmessage = "{SORRY}"\n\n[log]\npath = "{db}"'
    return config_text(stub.base_url, 'best_of = 3\nselection = "vote"\nhistory_turns = 0', extra)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[list[GuardBot]]:
    bots: list[GuardBot] = []
    yield bots
    for bot in bots:
        await bot.close()


async def open_bot(text: str, bots: list[GuardBot]) -> GuardBot:
    bot = await GuardBot.open(parse_config(text, "test"), env={"OPENAI_API_KEY": "sk-test"})
    bots.append(bot)
    return bot


def msg(user: str, channel: str = "c1", text: str = "2+2?", platform: str = "test") -> ChatRequest:
    return ChatRequest(platform=platform, user_id=user, channel_id=channel, text=text)


async def test_user_budget_refuses_politely_once_spent(
    stub_llm: StubOpenAI, tmp_path: Path, opened: list[GuardBot]
) -> None:
    # Every message costs 3 candidates x (40 in + 1 out) = 123 tokens.
    stub_llm.script = lambda _r: Reply("4", tokens_in=40, tokens_out=1)
    bot = await open_bot(
        budget_config(stub_llm, tmp_path / "log.db", "user_daily_tokens = 200"), opened
    )

    first = await bot.handle(msg("alice"))
    second = await bot.handle(msg("alice"))  # 123 used < 200: still allowed
    assert (first.action, second.action) == (Action.REPLIED, Action.REPLIED)
    assert first.tokens_in + first.tokens_out == 123
    asked = len(stub_llm.chat_requests())

    refused = await bot.handle(msg("alice"))

    assert refused.action is Action.BLOCKED and refused.reply == SORRY
    assert refused.blocked_by == "budget:user"
    assert refused.verdicts[0].reason == "user alice used 246 of 200 tokens today (UTC)"
    assert len(stub_llm.chat_requests()) == asked  # no model call for a refused message
    stored = await bot.log.get(refused.id)
    assert stored is not None and stored.action is Action.BLOCKED
    # Another user in the same channel is not affected by alice's budget.
    assert (await bot.handle(msg("bob"))).action is Action.REPLIED


async def test_channel_budget_covers_every_user(
    stub_llm: StubOpenAI, tmp_path: Path, opened: list[GuardBot]
) -> None:
    stub_llm.script = lambda _r: Reply("4", tokens_in=40, tokens_out=1)
    bot = await open_bot(
        budget_config(stub_llm, tmp_path / "log.db", "channel_daily_tokens = 100"), opened
    )

    assert (await bot.handle(msg("alice"))).action is Action.REPLIED
    refused = await bot.handle(msg("bob"))
    other_channel = await bot.handle(msg("bob", channel="c2"))

    assert refused.action is Action.BLOCKED and refused.blocked_by == "budget:channel"
    assert other_channel.action is Action.REPLIED


async def test_budget_resets_at_midnight_utc_and_fails_open(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    stub_llm.script = lambda _r: Reply("4", tokens_in=40, tokens_out=1)
    log = await DecisionLog.open(tmp_path / "log.db")
    bot = GuardBot(
        parse_config(budget_config(stub_llm, tmp_path / "log.db", ""), "t"),
        log,
        env={"OPENAI_API_KEY": "sk-test"},
    )
    try:
        await bot.handle(msg("alice"))
        now = datetime.now(UTC)
        limits = {"user_daily_tokens": 10, "channel_daily_tokens": None}
        spent = await check_budget(log, msg("alice"), now=now, **limits)
        assert spent is not None and spent.used == 123
        assert await check_budget(log, msg("alice"), now=now + timedelta(days=1), **limits) is None
        assert day_start(datetime(2024, 5, 1, 23, 59, tzinfo=UTC)) == datetime(
            2024, 5, 1, tzinfo=UTC
        )
    finally:
        await bot.close()
    # The log is closed now: reading usage fails, and the budget steps aside (fail-open).
    assert await check_budget(log, msg("alice"), now=now, **limits) is None


async def test_same_ids_on_different_platforms_do_not_share_a_budget(
    stub_llm: StubOpenAI, tmp_path: Path, opened: list[GuardBot]
) -> None:
    # Ids are only unique within a platform: console user "U1" is not Slack user "U1".
    stub_llm.script = lambda _r: Reply("4", tokens_in=40, tokens_out=1)
    budgets = "user_daily_tokens = 200\nchannel_daily_tokens = 300"
    bot = await open_bot(budget_config(stub_llm, tmp_path / "log.db", budgets), opened)

    for _ in range(2):
        assert (await bot.handle(msg("U1", platform="console"))).action is Action.REPLIED
    refused = await bot.handle(msg("U1", platform="console"))
    assert refused.action is Action.BLOCKED and refused.blocked_by == "budget:user"
    asked = len(stub_llm.chat_requests())

    slack = await bot.handle(msg("U1", platform="slack"))

    assert slack.action is Action.REPLIED and len(stub_llm.chat_requests()) == asked + 3
    since = day_start(datetime.now(UTC))
    assert await bot.log.tokens_used_since(since, user_id="U1", platform="console") == 246
    assert await bot.log.tokens_used_since(since, user_id="U1", platform="slack") == 123
    assert await bot.log.tokens_used_since(since, user_id="U1") == 369  # no platform: all
    assert await bot.log.tokens_used_since(since, channel_id="c1", platform="slack") == 123
    # Channels too: console "c1" reaches its 300 (246 + 123) and refuses, while Slack's
    # "c1" has used 123 and still answers (shared, it would be at 492).
    assert (await bot.handle(msg("U2", platform="console"))).action is Action.REPLIED
    spent = await bot.handle(msg("U3", platform="console"))
    assert spent.action is Action.BLOCKED and spent.blocked_by == "budget:channel"
    assert (await bot.handle(msg("U3", platform="slack"))).action is Action.REPLIED
