"""A compressed reply is bounded by what it decodes to, not by the bytes that arrived.

255 KiB of gzip can decode to 256 MiB, so the transport decodes gzip and deflate
itself, piece by piece with zlib's ``max_length`` capped one past what is left of
the bound, and refuses a Content-Encoding it cannot decode that way. The real
`openai` client against the stub server sending compressed bodies, plain and
streamed; the bounds are lowered per test, and the decoder's calls are recorded
to show that no call could decode more than the bound (not the process's memory,
which other tests share).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import pytest

from middleware.errors import LLMError
from middleware.llm import transport
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_client import LeanOpenAI
from middleware.llm.openai_model import OpenAIChatModel
from middleware.llm.transport import ACCEPT_ENCODING, AioHttpClient
from tests.stubs.openai_server import Reply, StubOpenAI

HELLO = [Message("user", "hello there")]
BOUND = 64 * 1024  # lowered from 8 MiB; a bomb below decodes to 256 times as much
BOMB = "x" * (256 * BOUND)  # gzips to about 16 KiB: what arrives is far below the bound


@dataclass
class DecodeCalls:
    """zlib as the transport sees it, recording each call's max_length and output size."""

    MAX_WBITS = zlib.MAX_WBITS
    error = zlib.error
    calls: list[tuple[int | None, int]] = field(default_factory=list)  # None: flush()

    def decompressobj(self, wbits: int) -> _Recorded:
        return _Recorded(zlib.decompressobj(wbits), self.calls)

    def decoded(self) -> int:
        return sum(size for _, size in self.calls)


@dataclass
class _Recorded:
    real: zlib._Decompress
    calls: list[tuple[int | None, int]]

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self.real.decompress(data, max_length)
        self.calls.append((max_length, len(out)))
        return out

    def flush(self) -> bytes:
        out = self.real.flush()
        self.calls.append((None, len(out)))
        return out


@pytest.fixture
def decoder(monkeypatch: pytest.MonkeyPatch) -> DecodeCalls:
    calls = DecodeCalls()
    monkeypatch.setattr(transport, "zlib", calls)
    return calls


@pytest.fixture(params=[False, True], ids=["plain", "streamed"])
async def model(
    request: pytest.FixtureRequest, stub_llm: StubOpenAI
) -> AsyncIterator[OpenAIChatModel]:
    client = LeanOpenAI(
        api_key="k",
        base_url=stub_llm.base_url,
        max_retries=0,
        http_client=AioHttpClient(max_body_bytes=BOUND, max_stream_bytes=BOUND),
    )
    chat = OpenAIChatModel(model="m", api_key=None, client=client, stream=request.param)
    yield chat
    await chat.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_reply_arrives_decoded(
    stub_llm: StubOpenAI, model: OpenAIChatModel, decoder: DecodeCalls, encoding: str
) -> None:
    stub_llm.script = lambda _r: Reply(text="caf\u00e9 is fine " * 50, encoding=encoding)
    completion = await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    assert completion.text == "caf\u00e9 is fine " * 50
    assert decoder.calls  # decoded by the transport, not by httpx after it
    (rec,) = stub_llm.chat_requests()
    assert rec.headers["Accept-Encoding"] == ACCEPT_ENCODING == "gzip, deflate"


async def test_a_gzip_bomb_stops_at_the_bound(
    stub_llm: StubOpenAI, model: OpenAIChatModel, decoder: DecodeCalls
) -> None:
    never = asyncio.Event()  # streamed: the stub waits for it after the bomb; a hang-up ends it
    stub_llm.script = lambda _r: Reply(
        raw_body=BOMB, pieces=[BOMB, "never"], pauses={1: never}, encoding="gzip"
    )
    what = "stream" if model.streamed else "reply"
    with pytest.raises(LLMError, match=rf"sent a {what} over {BOUND} bytes.*POST http"):
        await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    # No call was allowed more than one byte past the bound, and none produced more.
    assert decoder.calls and all(0 < limit <= BOUND + 1 for limit, _ in decoder.calls if limit)
    assert BOUND < decoder.decoded() <= BOUND + 1 < len(BOMB)
    (rec,) = stub_llm.chat_requests()
    await asyncio.wait_for(rec.done.wait(), 5)
    # Streamed, the stub waits after the bomb: only the client's hang-up ends it.
    assert rec.outcome == ("closed_early" if model.streamed else "completed")


async def test_the_bound_is_on_the_decoded_size_to_the_byte(
    stub_llm: StubOpenAI, decoder: DecodeCalls
) -> None:
    head, tail = '{"choices": [{"message": {"content": "', '"}}]}'
    body = head + "y" * (BOUND - len(head) - len(tail)) + tail
    url = f"{stub_llm.base_url}/chat/completions"
    sent = [body, body + " "]  # the bound exactly, and one byte past it
    stub_llm.script = lambda _r: Reply(
        raw_body=sent[len(stub_llm.chat_requests()) - 1], encoding="gzip"
    )
    answers: list[object] = []
    for _ in sent:
        client = AioHttpClient(max_body_bytes=BOUND)
        try:
            answers.append(await client.send(client.build_request("POST", url, content=b"{}")))
        except LLMError as exc:
            answers.append(exc)
        finally:
            await client.aclose()
    whole, refused = answers
    assert isinstance(whole, httpx2.Response) and whole.content == body.encode()
    assert "content-encoding" not in whole.headers  # decoded: httpx must not decode it again
    assert isinstance(refused, LLMError) and f"sent a reply over {BOUND} bytes" in str(refused)
    assert decoder.decoded() == 2 * BOUND + 1


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
async def test_a_coding_the_client_cannot_bound_is_refused(
    stub_llm: StubOpenAI, model: OpenAIChatModel, encoding: str
) -> None:
    stub_llm.script = lambda _r: Reply(text="hidden", encoding=encoding)
    what = "stream" if model.streamed else "reply"
    with pytest.raises(LLMError) as caught:
        await model.complete(HELLO, settings=ModelSettings(timeout_s=5))
    assert str(caught.value).startswith(
        f"model server sent a {what} in Content-Encoding {encoding!r}, which the client "
        f"does not decode (it asks for gzip, deflate) (POST {stub_llm.base_url}/chat/completions)"
    )
    assert len(stub_llm.chat_requests()) == 1  # not retried: it would come the same way


async def test_a_request_httpx_builds_asks_for_the_same_codings(stub_llm: StubOpenAI) -> None:
    """A request with query params takes httpx's build_request, with the client's headers."""
    stub_llm.script = lambda _r: Reply(text="zipped", encoding="deflate")
    client = AioHttpClient()
    try:
        url = f"{stub_llm.base_url}/chat/completions"
        request = client.build_request("POST", url, params={"q": "1"}, content=b"{}")
        response = await client.send(request)
    finally:
        await client.aclose()
    assert response.json()["choices"][0]["message"]["content"] == "zipped"
    (rec,) = stub_llm.chat_requests()
    assert rec.headers["Accept-Encoding"] == ACCEPT_ENCODING
