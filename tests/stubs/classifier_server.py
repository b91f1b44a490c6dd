"""A stub inference server speaking TEI ``/predict`` and vLLM ``/classify``, on 127.0.0.1.

The classifier guard is tested against it over real HTTP. What it answers is
scripted per request (label probabilities, a delay, an HTTP status, or a raw
body for malformed answers), and every request is recorded with how it ended:
``completed`` or ``closed_early`` (the client hung up first), with an event
set when it ends, so tests prove cancellation from records, not timing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    """What the stub answers to one request."""

    scores: dict[str, float] = field(default_factory=dict)  # label -> probability
    delay_s: float = 0.0
    status: int = 200
    raw_body: str | None = None  # sent verbatim instead of a well-formed answer
    hold: asyncio.Event | None = None  # answer only once the test sets this event


@dataclass
class Call:
    path: str
    body: Any
    headers: dict[str, str]
    outcome: str = "open"  # open | completed | closed_early
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StubClassifier:
    """``classes`` is the model's class order (its id2label), used by the vLLM answer."""

    def __init__(
        self,
        script: Callable[[Call], Answer] | None = None,
        classes: tuple[str, ...] = ("LABEL_0", "LABEL_1"),
    ) -> None:
        self.script = script or (lambda _call: Answer(scores=dict.fromkeys(classes, 0.5)))
        self.classes = classes
        self.calls: list[Call] = []
        self.call_seen = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> StubClassifier:
        app = web.Application()
        app.router.add_post("/predict", self._predict)
        app.router.add_post("/classify", self._classify)
        # handler_cancellation: a client hang-up cancels the handler, which is the
        # event the cancellation tests observe.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> tuple[Call, Answer]:
        """Record the call and wait as scripted (a hang-up is recorded, then re-raised)."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        call = Call(path=request.path, body=body, headers=dict(request.headers))
        self.calls.append(call)
        self.call_seen.set()
        answer = self.script(call)
        try:
            if answer.hold is not None:
                await answer.hold.wait()
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
        except asyncio.CancelledError:
            call.outcome = "closed_early"
            call.done.set()
            raise
        call.outcome = "completed"
        call.done.set()
        return call, answer

    @staticmethod
    def _verbatim(answer: Answer) -> web.Response | None:
        if answer.raw_body is None and answer.status == 200:
            return None
        text = answer.raw_body
        if text is None:
            text = json.dumps({"error": f"stub error {answer.status}", "error_type": "backend"})
        return web.Response(status=answer.status, text=text, content_type="application/json")

    async def _predict(self, request: web.Request) -> web.Response:
        _call, answer = await self._answer(request)
        verbatim = self._verbatim(answer)
        if verbatim is not None:
            return verbatim
        ranked = sorted(answer.scores.items(), key=lambda item: -item[1])
        return web.json_response([{"score": s, "label": label} for label, s in ranked])

    async def _classify(self, request: web.Request) -> web.Response:
        call, answer = await self._answer(request)
        verbatim = self._verbatim(answer)
        if verbatim is not None:
            return verbatim
        probs = [answer.scores.get(name, 0.0) for name in self.classes]
        best = self.classes[probs.index(max(probs))]
        body = call.body if isinstance(call.body, dict) else {}
        return web.json_response(
            {
                "id": "classify-stub",
                "object": "list",
                "created": 0,
                "model": body.get("model", "stub"),
                "data": [{"index": 0, "label": best, "probs": probs, "num_classes": len(probs)}],
                "usage": {"prompt_tokens": 7, "total_tokens": 7, "completion_tokens": 0},
            }
        )


@contextmanager
def classifier_in_thread(
    script: Callable[[Call], Answer], classes: tuple[str, ...] = ("LABEL_0", "LABEL_1")
) -> Iterator[StubClassifier]:
    """The stub on its own loop in a thread, for code that runs ``asyncio.run`` (the CLI)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stub = StubClassifier(script, classes)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(stub.__aenter__())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stub.__aexit__())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("stub classifier did not start")
    try:
        yield stub
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
