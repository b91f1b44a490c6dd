"""The model client against a hostile or broken OpenAI-compatible server.

Whatever a server sends about itself (usage counts, its model name) is stored
with the decision, so it must arrive as something the log can store: a count
in 0..2**31-1, a short plain string. The real `openai` client against the stub
server, plain and streamed, and once through the whole bot into SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_model import MAX_COUNT, MODEL_NAME_CHARS, OpenAIChatModel
from middleware.types import Action, ChatRequest
from tests.stubs.openai_server import Reply, StubOpenAI

HELLO = [Message("user", "hello there")]


@pytest.fixture(params=[False, True], ids=["plain", "streamed"])
async def model(
    request: pytest.FixtureRequest, stub_llm: StubOpenAI
) -> AsyncIterator[OpenAIChatModel]:
    chat = OpenAIChatModel(
        model="asked", api_key=None, base_url=stub_llm.base_url, max_retries=0, stream=request.param
    )
    yield chat
    await chat.close()


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (10**19, MAX_COUNT),
        (2**63, MAX_COUNT),
        (1e300, MAX_COUNT),
        (-1_000_000, 0),
        ("12", 0),
        (None, 0),
        (True, 0),
        (12.0, 12),
        (float("nan"), 0),  # Python's json writes NaN; a lenient server might too
        ([3], 0),
        (7, 7),
    ],
)
async def test_a_usage_count_arrives_storable(
    stub_llm: StubOpenAI, model: OpenAIChatModel, sent: Any, stored: int
) -> None:
    stub_llm.script = lambda _r: Reply(
        text="two words", usage={"prompt_tokens": sent, "completion_tokens": sent}
    )
    completion = await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    assert completion.text == "two words"
    assert completion.tokens_in == stored
    # A streamed reply without a usable count is estimated from its words, as before.
    assert completion.tokens_out == (2 if model.streamed and not stored else stored)


@pytest.mark.parametrize("usage", [7, "lots", [1, 2]])
async def test_a_usage_that_is_not_an_object_counts_nothing(
    stub_llm: StubOpenAI, model: OpenAIChatModel, usage: Any
) -> None:
    stub_llm.script = lambda _r: Reply(text="hi", usage=usage)
    completion = await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    assert (completion.text, completion.tokens_in) == ("hi", 0)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("M" * 1_000_000, "M" * MODEL_NAME_CHARS),
        ({"a": 1}, "asked"),
        (42, "asked"),
        ("", "asked"),
        ("served-model", "served-model"),
    ],
)
async def test_the_servers_model_name_arrives_short_and_plain(
    stub_llm: StubOpenAI, model: OpenAIChatModel, sent: Any, stored: str
) -> None:
    stub_llm.script = lambda _r: Reply(text="hi", model=sent)
    completion = await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    assert type(completion.model) is str and completion.model == stored


async def test_a_guard_server_with_a_huge_usage_leaves_a_stored_decision(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    """Finding 1 end to end: the judge's usage 10**19 once made the decision unstorable."""
    verdict = '{"unsafe": false, "category": "none", "score": 0, "reason": "ok"}'

    def script(rec: Any) -> Reply:
        if rec.body.get("model") == "guard-model":
            return Reply(text=verdict, usage={"prompt_tokens": 10**19, "completion_tokens": -5})
        return Reply(text="Hi there", usage={"prompt_tokens": 2**63, "completion_tokens": 1e300})

    stub_llm.script = script
    config = parse_config(
        f'[llm]\nbase_url = "{stub_llm.base_url}"\nmax_retries = 0\n'
        '[[guards]]\nname = "judge"\nkind = "llm_judge"\nmodel = "guard-model"\n'
        f'[log]\npath = "{tmp_path / "g.db"}"\n',
        "test",
    )
    log = await DecisionLog.open(config.log.path)
    bot = GuardBot(config, log, env={})
    try:
        decision = await bot.handle(ChatRequest(platform="test", channel_id="c", text="hi"))
        stored = await log.get_stored(decision.id)
    finally:
        await bot.close()
    assert decision.action is Action.REPLIED and decision.reply == "Hi there"
    assert stored is not None
    (candidate,) = stored.decision.candidates
    assert (candidate.tokens_in, candidate.tokens_out) == (MAX_COUNT, MAX_COUNT)
