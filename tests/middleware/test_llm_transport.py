"""The HTTP transport under the `openai` client: aiohttp by default, httpx on request.

Both transports must keep every promise the pipeline relies on: the reply and
its usage arrive, errors keep their meaning, and cancelling a call (plain or
streamed) or timing it out closes the HTTP request, which the stub records as
``closed_early``. guardbot's own ``AioHttpClient`` is the default; behind a proxy
the package's aiohttp client (the ``openai[aiohttp]`` extra) is used, and httpx
when that extra is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from openai._models import FinalRequestOptions

from bot.config.providers import ModelProvider
from bot.config.schema import LLMConfig
from middleware.errors import LLMError
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_client import LeanOpenAI
from middleware.llm.openai_model import OpenAIChatModel, Transport, build_client
from middleware.llm.transport import AioHttpClient, _wire_headers
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

TRANSPORTS: list[Transport] = ["aiohttp", "httpx"]
HELLO = [Message("user", "hello there")]


@pytest.fixture(params=TRANSPORTS)
async def model(
    request: pytest.FixtureRequest, stub_llm: StubOpenAI
) -> AsyncIterator[OpenAIChatModel]:
    chat = OpenAIChatModel(
        model="stub-model",
        api_key="sk-test",
        base_url=stub_llm.base_url,
        max_retries=0,
        transport=request.param,
    )
    yield chat
    await chat.close()


def streaming(model: OpenAIChatModel) -> OpenAIChatModel:
    """The same client, streaming."""
    return OpenAIChatModel(model=model.name, api_key=None, client=model.client, stream=True)


def test_aiohttp_is_the_default_and_httpx_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    default = build_client(api_key=None, base_url="http://127.0.0.1:1/v1", max_retries=0)
    fallback = build_client(
        api_key=None, base_url="http://127.0.0.1:1/v1", max_retries=0, transport="httpx"
    )
    assert isinstance(default._client, AioHttpClient)
    assert not isinstance(fallback._client, AioHttpClient | openai.DefaultAioHttpClient)
    assert isinstance(fallback._client, openai.DefaultAsyncHttpxClient)


def test_behind_a_proxy_the_packages_own_aiohttp_client_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = build_client(api_key=None, base_url="https://api.example/v1", max_retries=0)
    assert isinstance(client._client, openai.DefaultAioHttpClient)

    class Missing(openai.DefaultAsyncHttpxClient):
        # What the openai package puts in its place when the extra is not installed.
        def __init__(self, **_kwargs: object) -> None:
            raise RuntimeError("To use the aiohttp client you must have installed the package")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", Missing)
    client = build_client(api_key=None, base_url="https://api.example/v1", max_retries=0)
    assert isinstance(client._client, openai.DefaultAsyncHttpxClient)
    assert not isinstance(client._client, Missing | AioHttpClient)


async def test_the_provider_builds_the_configured_transport(stub_llm: StubOpenAI) -> None:
    choices: list[tuple[Transport, bool]] = [("aiohttp", True), ("httpx", False)]
    for transport, aiohttp in choices:
        llm = LLMConfig(base_url=stub_llm.base_url, max_retries=0, transport=transport)
        provider = ModelProvider(llm, env={})
        try:
            client = provider.openai_client()
            assert client is not None
            assert isinstance(client._client, AioHttpClient) is aiohttp
            completion = await provider(model="judge").complete(HELLO, settings=ModelSettings())
            assert completion.model == "judge" and completion.text == "ok"
        finally:
            await provider.close()


def _as_built(request: httpx2.Request) -> tuple[object, ...]:
    return (
        request.method,
        str(request.url),
        request.headers.multi_items(),
        request.content,
        request.extensions,
    )


async def test_the_lean_client_builds_what_the_package_builds() -> None:
    """LeanOpenAI overrides a private method of openai 3.x: every field of what it builds,
    reused or not, must equal the package's own build of the same options."""
    client = build_client(api_key="sk-test", base_url="http://127.0.0.1:1/v1", max_retries=2)
    assert isinstance(client, LeanOpenAI)
    url = "http://127.0.0.1:1/v1/chat/completions"
    plain = [
        FinalRequestOptions.construct(
            method="post", url=url, json_data=body, timeout=timeout, security=security
        )
        for body in (b'{"model":"a"}', '{"model":"\u00e9 b"}'.encode())
        for timeout in (30.0, 5, 5.0)  # 5 and 5.0 print differently in the timeout header
        for security in ({"bearer_auth": True}, {"bearer_auth": True, "admin_api_key_auth": True})
    ]
    other = [  # the package's own path, every time
        FinalRequestOptions.construct(method="post", url=url, json_data={"model": "a"}),
        FinalRequestOptions.construct(
            method="post", url=url, json_data=b"{}", headers={"X-Extra": "1"}, timeout=3.0
        ),
        FinalRequestOptions.construct(
            method="post", url=url, json_data=b"{}", params={"q": "1"}, timeout=3.0
        ),
        FinalRequestOptions.construct(
            method="post", url=url, json_data=b"{}", timeout=httpx2.Timeout(3.0, connect=1.0)
        ),
    ]
    try:
        for retries in (0, 1, 0, 2):  # twice at 0: the second time from what was kept
            for options in [*plain, *other]:
                lean = client._build_request(options, retries_taken=retries)
                package = openai.AsyncOpenAI._build_request(client, options, retries_taken=retries)
                assert _as_built(lean) == _as_built(package)
                assert _wire_headers(lean.headers) == package.headers.multi_items()
        assert len(client._built) == 3 * 3 * 2  # retry counts x timeouts x securities
        changed = client._build_request(plain[0])  # as an auth hook might change it
        changed.headers["Authorization"] = "Bearer other"
        del changed.headers["X-Stainless-Lang"]
        assert _wire_headers(changed.headers) == changed.headers.multi_items()
        assert ("authorization", "Bearer other") in _wire_headers(changed.headers)
        extended = client._build_request(plain[0])  # update() and |= add names directly
        extended.headers |= {"X-Provider": "1"}
        assert ("x-provider", "1") in _wire_headers(extended.headers)
        client._custom_headers["X-Tenant"] = "t1"  # default_headers changed after the start
        tenant = client._build_request(plain[0])
        package = openai.AsyncOpenAI._build_request(client, plain[0])
        assert _wire_headers(tenant.headers) == package.headers.multi_items()
        assert ("x-tenant", "t1") in _wire_headers(tenant.headers)
        assert "AsyncOpenAI/Python" in client.user_agent  # what servers always saw
    finally:
        await client.close()


async def test_a_plain_reply_reads_as_httpx_reads_it(stub_llm: StubOpenAI) -> None:
    """The transport hands over a read reply without httpx's read(): it must look read."""
    stub_llm.script = lambda _r: Reply(text="caf\u00e9 ok")
    client = AioHttpClient()
    try:
        request = client.build_request(
            "POST", f"{stub_llm.base_url}/chat/completions", content=b'{"model":"m"}'
        )
        response = await client.send(request)
    finally:
        await client.aclose()
    body = response.content
    read = httpx2.Response(200, headers=response.headers, content=body)
    assert response.is_closed and response.is_stream_consumed
    assert (await response.aread(), response.text, response.json()) == (
        read.read(),
        read.text,
        read.json(),
    )
    assert response.json()["choices"][0]["message"]["content"] == "caf\u00e9 ok"


async def test_a_retry_says_so_in_its_headers(stub_llm: StubOpenAI) -> None:
    def script(_rec: Recorded) -> Reply:
        first = len(stub_llm.chat_requests()) == 1
        return Reply(status=503) if first else Reply(text="ok now")

    stub_llm.script = script
    chat = OpenAIChatModel(model="m", api_key="sk-test", base_url=stub_llm.base_url, max_retries=1)
    try:
        for _ in range(2):
            stub_llm.requests.clear()
            assert (await chat.complete(HELLO, settings=ModelSettings())).text == "ok now"
            counts = [r.headers["x-stainless-retry-count"] for r in stub_llm.chat_requests()]
            assert counts == ["0", "1"]
            assert {r.headers["Authorization"] for r in stub_llm.chat_requests()} == {
                "Bearer sk-test"
            }
    finally:
        await chat.close()


async def test_sequential_calls_share_one_kept_alive_connection(stub_llm: StubOpenAI) -> None:
    chat = OpenAIChatModel(model="m", api_key=None, base_url=stub_llm.base_url, max_retries=0)
    try:
        for _ in range(3):
            await chat.complete(HELLO, settings=ModelSettings())
        peers = {rec.peer for rec in stub_llm.chat_requests()}
    finally:
        await chat.close()
    assert len(stub_llm.chat_requests()) == 3 and len(peers) == 1


async def test_reply_usage_and_key_reach_both_ends(
    stub_llm: StubOpenAI, model: OpenAIChatModel
) -> None:
    stub_llm.script = lambda _r: Reply(text="four words right here", tokens_in=12)
    settings = ModelSettings(temperature=0.2, max_tokens=40, model="other-model")
    completion = await model.complete(HELLO, settings=settings)
    assert completion.text == "four words right here"
    assert (completion.tokens_in, completion.tokens_out) == (12, 4)
    assert completion.model == "other-model"
    (rec,) = stub_llm.chat_requests()
    assert rec.headers["Authorization"] == "Bearer sk-test"
    assert rec.body == {
        "model": "other-model",
        "messages": [{"role": "user", "content": "hello there"}],
        "temperature": 0.2,
        "max_tokens": 40,
    }


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(status=401), "HTTP 401"),
        (Reply(raw_body="{not json"), "malformed"),
        (Reply(raw_body='{"choices": [{"text": "no message"}]}'), "malformed"),
        (Reply(raw_body='{"choices": []}'), "no choices"),
    ],
)
async def test_errors_keep_their_meaning(
    stub_llm: StubOpenAI, model: OpenAIChatModel, reply: Reply, reason: str
) -> None:
    stub_llm.script = lambda _r: reply
    with pytest.raises(LLMError, match=reason):
        await model.complete(HELLO, settings=ModelSettings())


async def test_retries_still_happen(stub_llm: StubOpenAI, model: OpenAIChatModel) -> None:
    def script(_rec: Recorded) -> Reply:
        first = len(stub_llm.chat_requests()) == 1
        return Reply(status=429, headers={"retry-after": "0"}) if first else Reply(text="ok now")

    stub_llm.script = script
    retrying = OpenAIChatModel(
        model="m", api_key=None, client=model.client.with_options(max_retries=1)
    )
    assert (await retrying.complete(HELLO, settings=ModelSettings())).text == "ok now"
    assert len(stub_llm.chat_requests()) == 2


async def test_cancelling_a_call_closes_its_request(
    stub_llm: StubOpenAI, model: OpenAIChatModel
) -> None:
    stub_llm.script = lambda _r: Reply(text="late", delay_s=30)
    call = asyncio.create_task(model.complete(HELLO, settings=ModelSettings()))
    await stub_llm.request_seen.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    rec = stub_llm.chat_requests()[0]
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.closed_early


async def test_cancelling_a_stream_mid_reply_closes_its_request(
    stub_llm: StubOpenAI, model: OpenAIChatModel
) -> None:
    # 300 chunks over 30 s: the first arrives at once, the rest would take long.
    stub_llm.script = lambda _r: Reply(text="word " * 300, delay_s=30, chunks=300)
    call = asyncio.create_task(streaming(model).complete(HELLO, settings=ModelSettings()))
    await stub_llm.request_seen.wait()
    rec = stub_llm.chat_requests()[0]
    await rec.first_chunk.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.closed_early and rec.chunks_sent < 300


async def test_a_timeout_closes_the_request(stub_llm: StubOpenAI, model: OpenAIChatModel) -> None:
    stub_llm.script = lambda _r: Reply(text="late", delay_s=30)
    with pytest.raises(LLMError, match="timed out"):
        await model.complete(HELLO, settings=ModelSettings(timeout_s=0.2))
    rec = stub_llm.chat_requests()[0]
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.closed_early


async def test_a_stream_arrives_whole(stub_llm: StubOpenAI, model: OpenAIChatModel) -> None:
    stub_llm.script = lambda _r: Reply(text="one two three four five", chunks=3, tokens_in=7)
    completion = await streaming(model).complete(HELLO, settings=ModelSettings())
    assert completion.text == "one two three four five"
    assert (completion.tokens_in, completion.tokens_out) == (7, 5)
    assert stub_llm.chat_requests()[0].body["stream"] is True
