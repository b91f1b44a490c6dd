"""A small OpenAI-compatible HTTP server for tests and benchmarks, on 127.0.0.1.

It speaks enough of the API for the real `openai` client: chat completions
(plain and streamed as server-sent events) and moderations. Replies are
scripted per request by a function, and every request is recorded with how it
ended: ``completed`` or ``closed_early`` (the client hung up first). Tests
prove cancellation from those records and their events, never from timing.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """What the stub answers to one request."""

    text: str = "ok"
    delay_s: float = 0.0  # before answering (spread across chunks when streaming)
    status: int = 200
    raw_body: str | None = None  # sent verbatim instead of a well-formed body
    headers: dict[str, str] = field(default_factory=dict)
    tokens_in: int = 10
    tokens_out: int | None = None  # default: words in text
    chunks: int = 4  # streaming: how many content chunks
    drop_after_chunks: int | None = None  # streaming: hang up mid-reply after this many chunks
    pieces: list[str] | None = None  # streaming: exactly these content pieces (text unused)
    first_token_s: float = 0.0  # streaming: wait before the first piece (time to first token)
    # streaming: before piece i, wait for pauses[i] (one never set: only the client ends it)
    pauses: dict[int, asyncio.Event] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # answer only once the test sets this event
    moderation: dict[str, float] | None = None  # category scores for /moderations
    model: Any = None  # any JSON value: a hostile server's name for itself
    usage: Any = None  # any JSON value, sent instead of the counts above (hostile servers)
    content_type: str = "application/json"  # e.g. text/html: a web page where the API should be
    # The body compressed so and sent with this Content-Encoding (gzip, deflate); any
    # other name is sent with the body as it is (a coding the client must refuse).
    encoding: str | None = None


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    started: float
    headers: dict[str, str] = field(default_factory=dict)
    ended: float | None = None
    outcome: str = "open"  # open | completed | closed_early | dropped
    done: asyncio.Event = field(default_factory=asyncio.Event)
    chunks_sent: int = 0  # streaming: content chunks written so far
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    peer: str = ""  # the client's address and port: one per connection it opened

    @property
    def closed_early(self) -> bool:
        return self.outcome == "closed_early"

    def text(self) -> str:
        """All message contents joined, for routing and assertions."""
        messages = self.body.get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in messages)


Script = Callable[[Recorded], Reply]


class StubOpenAI:
    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda _req: Reply())
        self.requests: list[Recorded] = []
        self.request_seen = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/_records", self._records)  # for a stub in another process
        # handler_cancellation: a client hang-up cancels the handler, which is
        # exactly the event the tests want to observe.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)  # 0: any free port
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> StubOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _records(self, _request: web.Request) -> web.Response:
        rows = [
            {"model": r.body.get("model"), "text": r.text()[-200:], "outcome": r.outcome}
            for r in self.requests
        ]
        return web.json_response(rows)

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    async def _record(self, request: web.Request) -> tuple[Recorded, Reply]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {}
        rec = Recorded(
            path=request.path, body=body, started=time.perf_counter(), headers=dict(request.headers)
        )
        if request.transport is not None:
            rec.peer = str(request.transport.get_extra_info("peername"))
        self.requests.append(rec)
        self.request_seen.set()
        return rec, self.script(rec)

    def _finish(self, rec: Recorded, outcome: str) -> None:
        rec.outcome = outcome
        rec.ended = time.perf_counter()
        rec.done.set()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec, reply = await self._record(request)
        response: web.StreamResponse
        try:
            if reply.hold is not None:
                await reply.hold.wait()
            if rec.body.get("stream"):
                response = await self._stream(request, rec, reply)
            else:
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                response = self._plain(rec, reply)
        except (asyncio.CancelledError, ConnectionResetError):
            self._finish(rec, "closed_early")
            raise
        if rec.outcome == "open":
            self._finish(rec, "completed")
        return response

    def _plain(self, rec: Recorded, reply: Reply) -> web.Response:
        response = self._plain_body(rec, reply)
        if reply.encoding is not None:
            assert isinstance(response.body, bytes)
            response.body = _compressor(reply.encoding)(response.body)
            response.headers["Content-Encoding"] = reply.encoding
        return response

    def _plain_body(self, rec: Recorded, reply: Reply) -> web.Response:
        if reply.raw_body is not None or reply.status != 200:
            body = reply.raw_body
            if body is None:
                body = json.dumps({"error": {"message": f"stub error {reply.status}"}})
            return web.Response(
                status=reply.status,
                text=body,
                content_type=reply.content_type,
                headers=reply.headers,
            )
        out = reply.tokens_out if reply.tokens_out is not None else len(reply.text.split())
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or rec.body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": reply.tokens_in,
                "completion_tokens": out,
                "total_tokens": reply.tokens_in + out,
            }
            if reply.usage is None
            else reply.usage,
        }
        return web.json_response(payload, headers=reply.headers)

    async def _stream(
        self, request: web.Request, rec: Recorded, reply: Reply
    ) -> web.StreamResponse:
        if reply.status != 200:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            return self._plain(rec, reply)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        compress = None if reply.encoding is None else _compressor(reply.encoding, stream=True)
        if reply.encoding is not None:
            response.headers["Content-Encoding"] = reply.encoding

        async def write(data: bytes) -> None:
            await response.write(data if compress is None else compress(data))

        await response.prepare(request)
        model = reply.model or rec.body.get("model", "stub")
        words = reply.text.split(" ")
        n = max(1, min(reply.chunks, len(words)))
        step = -(-len(words) // n)
        pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
        if reply.pieces is not None:
            pieces = reply.pieces
        if reply.first_token_s:
            await asyncio.sleep(reply.first_token_s)
        for i, content in enumerate(pieces):
            if i in reply.pauses:
                await reply.pauses[i].wait()
            await asyncio.sleep(reply.delay_s / len(pieces))
            chunk = {
                "id": "chatcmpl-stream",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
            }
            await write(f"data: {json.dumps(chunk)}\n\n".encode())
            rec.chunks_sent += 1
            rec.first_chunk.set()
            if reply.drop_after_chunks is not None and rec.chunks_sent >= reply.drop_after_chunks:
                # The server dies mid-reply: the connection closes without the end of the stream.
                self._finish(rec, "dropped")
                if request.transport is not None:
                    request.transport.abort()
                return response
        text = "".join(pieces)
        out = reply.tokens_out if reply.tokens_out is not None else len(text.split())
        usage = {
            "id": "chatcmpl-stream",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": reply.tokens_in,
                "completion_tokens": out,
                "total_tokens": reply.tokens_in + out,
            }
            if reply.usage is None
            else reply.usage,
        }
        await write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        rec, reply = await self._record(request)
        try:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
        except asyncio.CancelledError:
            self._finish(rec, "closed_early")
            raise
        self._finish(rec, "completed")
        if reply.raw_body is not None or reply.status != 200:
            return self._plain(rec, reply)
        scores = reply.moderation or {}
        result = {
            "flagged": any(s >= 0.5 for s in scores.values()),
            "categories": {k: s >= 0.5 for k, s in scores.items()},
            "category_scores": scores,
        }
        payload = {"id": "modr-stub", "model": "omni-moderation-latest", "results": [result]}
        return web.json_response(payload)


def _compressor(encoding: str, *, stream: bool = False) -> Callable[[bytes], bytes]:
    """Bytes as a server sends them in ``encoding``: whole, or (``stream``) each piece
    flushed so the client can decode it as it arrives. An encoding the stub does not
    know (br, zstd) leaves the bytes as they are."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        return lambda data: data
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    if stream:
        return lambda data: packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)
    return lambda data: packer.compress(data) + packer.flush()
