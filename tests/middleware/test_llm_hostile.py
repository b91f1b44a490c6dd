"""The model client against a hostile or broken OpenAI-compatible server.

Whatever a server sends about itself (usage counts, its model name) is stored
with the decision, so it must arrive as something the log can store: a count
in 0..2**31-1, a short plain string. A reply is read up to a bound, plain or
streamed, and past it the call fails naming the bound. The real `openai`
client against the stub server, plain and streamed, and once through the whole
bot into SQLite; the bounds are lowered per test instead of sending megabytes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog
from middleware.errors import LLMError
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_client import BudgetedOpenAI, LeanOpenAI
from middleware.llm.openai_model import (
    MAX_COUNT,
    MODEL_NAME_CHARS,
    OpenAIChatModel,
    Transport,
)
from middleware.llm.transport import AioHttpClient
from middleware.types import Action, ChatRequest, Decision
from tests.stubs.openai_server import Reply, StubOpenAI

HELLO = [Message("user", "hello there")]
JUDGE = '[[guards]]\nname = "judge"\nkind = "llm_judge"\nmodel = "guard-model"\n'
TRANSPORTS: list[Transport] = ["aiohttp", "httpx"]


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
    decision = await one_message(stub_llm, tmp_path, f"max_retries = 0\n{JUDGE}")
    assert decision.action is Action.REPLIED and decision.reply == "Hi there"
    (candidate,) = decision.candidates
    assert (candidate.tokens_in, candidate.tokens_out) == (MAX_COUNT, MAX_COUNT)


async def one_message(stub_llm: StubOpenAI, tmp_path: Path, toml: str) -> Decision:
    """One message through the whole bot on the stub (``toml`` follows ``[llm] base_url``);
    the decision as the log stored it."""
    config = parse_config(
        f'[llm]\nbase_url = "{stub_llm.base_url}"\n{toml}\n[log]\npath = "{tmp_path / "g.db"}"\n',
        "test",
    )
    log = await DecisionLog.open(config.log.path)
    bot = GuardBot(config, log, env={})
    try:
        decision = await bot.handle(ChatRequest(platform="test", channel_id="c", text="hi"))
        stored = await log.get_stored(decision.id)
    finally:
        await bot.close()
    assert stored is not None
    return stored.decision


def bounded(base_url: str, *, stream: bool = False, **limits: int) -> OpenAIChatModel:
    """A model on guardbot's transport with lowered read bounds."""
    client = LeanOpenAI(
        api_key="k", base_url=base_url, max_retries=0, http_client=AioHttpClient(**limits)
    )
    return OpenAIChatModel(model="m", api_key=None, client=client, stream=stream)


async def test_a_plain_reply_over_the_bound_fails_naming_it(stub_llm: StubOpenAI) -> None:
    model = bounded(stub_llm.base_url, max_body_bytes=1024)
    try:
        stub_llm.script = lambda _r: Reply(text="x" * 1024)
        with pytest.raises(LLMError, match=r"sent a reply over 1024 bytes.*POST http"):
            await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
        stub_llm.script = lambda _r: Reply(text="small")  # the client is still usable
        assert (await model.complete(HELLO, settings=ModelSettings(timeout_s=5))).text == "small"
    finally:
        await model.close()
    assert len(stub_llm.chat_requests()) == 2  # not retried: it would be as large again


async def test_a_chunked_reply_is_counted_as_it_arrives(stub_llm: StubOpenAI) -> None:
    """No Content-Length (the stub's event stream, asked for as a plain reply): the
    body is read whole when it fits, and the read stops once it passes the bound."""
    stub_llm.script = lambda _r: Reply(text="word " * 100, chunks=100)
    url = f"{stub_llm.base_url}/chat/completions"
    bodies: list[httpx2.Response | LLMError] = []
    for limit in (100_000, 1000):
        client = AioHttpClient(max_body_bytes=limit)
        try:
            request = client.build_request("POST", url, content=b'{"stream": true}')
            bodies.append(await client.send(request))
        except LLMError as exc:
            bodies.append(exc)
        finally:
            await client.aclose()
    whole, refused = bodies
    assert isinstance(whole, httpx2.Response) and "transfer-encoding" in whole.headers
    assert 1000 < len(whole.content) < 100_000 and whole.text.endswith("data: [DONE]\n\n")
    assert isinstance(refused, LLMError) and "over 1000 bytes" in str(refused)


async def test_a_stream_over_its_byte_bound_fails_and_hangs_up(stub_llm: StubOpenAI) -> None:
    never = asyncio.Event()  # the stub waits for it before piece 30: only a hang-up ends it
    stub_llm.script = lambda _r: Reply(text="word " * 40, chunks=40, pauses={30: never})
    model = bounded(stub_llm.base_url, stream=True, max_stream_bytes=2000)
    try:
        with pytest.raises(LLMError, match="sent a stream over 2000 bytes"):
            await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    finally:
        await model.close()
    rec = stub_llm.chat_requests()[0]
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.closed_early


async def test_a_stream_over_its_character_bound_fails_and_hangs_up(
    stub_llm: StubOpenAI,
) -> None:
    never = asyncio.Event()
    stub_llm.script = lambda _r: Reply(pieces=["abcdef", "ghijkl", "never"], pauses={2: never})
    model = OpenAIChatModel(
        model="m", api_key=None, base_url=stub_llm.base_url, stream=True, max_reply_chars=10
    )
    try:
        with pytest.raises(LLMError, match="streamed a reply over 10 characters"):
            await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
        pieces = []
        with pytest.raises(LLMError, match="over 10 characters"):
            async for delta in model.stream(HELLO, settings=ModelSettings(timeout_s=5)):
                pieces.append(delta)
    finally:
        await model.close()
    assert pieces == ["abcdef"]  # what fits is shown; the piece that passes it is not
    for rec in stub_llm.chat_requests():
        await asyncio.wait_for(rec.done.wait(), 5)
        assert rec.closed_early


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_retry_the_call_has_no_time_for_fails_at_once_naming_the_status(
    stub_llm: StubOpenAI, transport: Transport, stream: bool
) -> None:
    """Retry-After: 30 with 3 s to go: once the client slept past the caller's timeout,
    which said only "timed out after 3s"; now the 429 is the error, at once."""
    stub_llm.script = lambda _r: Reply(status=429, headers={"Retry-After": "30"})
    model = OpenAIChatModel(
        model="m", api_key=None, base_url=stub_llm.base_url, max_retries=2,
        stream=stream, transport=transport,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):  # a 30 s sleep would fail here, not hang the suite
            with pytest.raises(LLMError) as caught:
                await model.complete(HELLO, settings=ModelSettings(timeout_s=3))
    finally:
        await model.close()
    message = str(caught.value)
    assert f"answered HTTP 429 (POST {stub_llm.base_url}/chat/completions)" in message
    assert "not retried: the retry would wait 30s and the call has" in message
    assert ("stub error 429" in message) is not stream  # a stream's error body goes unread
    assert len(stub_llm.chat_requests()) == 1


class Attempts(AioHttpClient):
    """guardbot's transport, counting what it is asked to send: one request per attempt.
    ``on_refused`` runs when a connection is refused, before the client sees it."""

    def __init__(self, on_refused: Callable[[], Awaitable[object]] | None = None) -> None:
        super().__init__()
        self.sent = 0
        self._on_refused = on_refused

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        self.sent += 1
        try:
            return await super().send(request, **kwargs)
        except httpx2.ConnectError:
            if self._on_refused is not None:
                await self._on_refused()
            raise


def counted(base_url: str, attempts: Attempts) -> OpenAIChatModel:
    client = LeanOpenAI(api_key="k", base_url=base_url, max_retries=8, http_client=attempts)
    return OpenAIChatModel(model="m", api_key=None, client=client)


async def test_a_server_that_cannot_be_reached_is_retried_while_time_allows(
    stub_llm: StubOpenAI,
) -> None:
    await stub_llm.stop()  # nothing listens at its address any more
    attempts = Attempts()
    model = counted(stub_llm.base_url, attempts)
    try:
        async with asyncio.timeout(20):
            with pytest.raises(LLMError) as caught:
                await model.complete(HELLO, settings=ModelSettings(timeout_s=2))
    finally:
        await model.close()
    # Backoff 0.5, 1, 2 ... s (less up to a quarter): the first two waits fit in 2 s, and
    # a wait of 2 s never does, so the call ends after 2 or 3 attempts, not 9.
    assert 2 <= attempts.sent <= 3
    assert str(caught.value).startswith(
        f"could not reach the model server (POST {stub_llm.base_url}/chat/completions); "
        "not retried: the retry would wait"
    )


async def test_a_server_that_comes_back_answers_the_retry(stub_llm: StubOpenAI) -> None:
    port = httpx2.URL(stub_llm.base_url).port
    assert port is not None
    await stub_llm.stop()

    async def back() -> None:  # listening again before the client's retry can connect
        if attempts.sent == 1:
            await stub_llm.start(port)

    attempts = Attempts(on_refused=back)
    model = counted(stub_llm.base_url, attempts)
    try:
        completion = await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    finally:
        await model.close()
    assert completion.text == "ok"
    assert attempts.sent == 2 and len(stub_llm.chat_requests()) == 1  # refused, then answered


def test_the_retry_hooks_overridden_keep_the_packages_signatures() -> None:
    """BudgetedOpenAI overrides a private method of openai 3.x and calls another."""
    sleep = inspect.signature(openai.AsyncOpenAI._sleep_for_retry)
    assert list(sleep.parameters) == ["self", "retries_taken", "max_retries", "options", "response"]
    assert inspect.signature(BudgetedOpenAI._sleep_for_retry) == sleep
    wait = inspect.signature(openai.AsyncOpenAI._calculate_retry_timeout)
    assert list(wait.parameters) == [
        "self", "remaining_retries", "options", "response_headers"
    ]  # fmt: skip


async def test_a_rate_limited_guard_says_so_in_its_verdict(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    def script(rec: Any) -> Reply:
        if rec.body.get("model") == "guard-model":
            return Reply(status=429, headers={"Retry-After": "30"})
        return Reply(text="Hi there")

    stub_llm.script = script
    decision = await one_message(stub_llm, tmp_path, f"max_retries = 2\n{JUDGE}timeout_s = 3")
    assert decision.action is Action.BLOCKED  # on_error = block, the default
    (verdict,) = decision.verdicts
    assert verdict.reason is not None and "answered HTTP 429" in verdict.reason
    assert "not retried: the retry would wait 30s" in verdict.reason


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stream_that_breaks_off_says_after_how_much_and_keeps_it(
    stub_llm: StubOpenAI, transport: Transport
) -> None:
    """Once reported as "could not reach the model server", which it had reached."""
    stub_llm.script = lambda _r: Reply(pieces=["abc", "defg", "never"], drop_after_chunks=2)
    model = OpenAIChatModel(
        model="m", api_key=None, base_url=stub_llm.base_url, max_retries=0,
        stream=True, transport=transport,
    )  # fmt: skip
    pieces: list[object] = []
    try:
        with pytest.raises(LLMError) as whole:
            await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
        with pytest.raises(LLMError) as streamed:
            async for delta in model.stream(HELLO, settings=ModelSettings(timeout_s=5)):
                pieces.append(delta)
    finally:
        await model.close()
    url = f"{stub_llm.base_url}/chat/completions"
    for caught in (whole, streamed):
        assert str(caught.value) == f"the model stream broke off after 7 characters (POST {url})"
        assert caught.value.raw == "abcdefg"
    assert pieces == ["abc", "defg"]


async def test_a_stream_that_stalls_says_it_timed_out_after_how_much(
    stub_llm: StubOpenAI,
) -> None:
    never = asyncio.Event()
    stub_llm.script = lambda _r: Reply(pieces=["abc", "never"], pauses={1: never})
    model = OpenAIChatModel(
        model="m", api_key=None, base_url=stub_llm.base_url, max_retries=0, stream=True
    )
    try:
        with pytest.raises(LLMError, match="the model stream timed out after 3 characters") as e:
            await model.complete(HELLO, settings=ModelSettings(timeout_s=0.3))
    finally:
        await model.close()
    assert e.value.raw == "abc"


async def test_a_guards_broken_stream_is_in_its_verdict_with_what_arrived(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    def script(rec: Any) -> Reply:
        if rec.body.get("model") == "guard-model":
            return Reply(pieces=['{"unsafe": false, ', '"category"'], drop_after_chunks=1)
        return Reply(text="Hi there")

    stub_llm.script = script
    decision = await one_message(stub_llm, tmp_path, f"max_retries = 0\nstream = true\n{JUDGE}")
    assert decision.action is Action.BLOCKED
    (verdict,) = decision.verdicts
    assert verdict.reason is not None
    assert verdict.reason.startswith("the model stream broke off after 18 characters (POST ")
    assert verdict.raw == '{"unsafe": false, '
