"""Scripted and function-backed models, shipped for tests, demos and replay.

`ScriptedModel` plays back a fixed list of replies and fails loudly on an
unexpected extra call (and `assert_consumed()` on a missing one), so a test
cannot silently pass while the pipeline calls the model more or less often
than it thinks. `FunctionModel` computes each reply from the messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from middleware.errors import LLMError
from middleware.llm.model import Completion, Delta, Message, ModelSettings, stream_whole


@dataclass(frozen=True, slots=True)
class Scripted:
    """One scripted reply: text (or an exception to raise) after an optional delay.

    Streamed, the reply comes as ``pieces`` (default: the whole text at once);
    ``error`` is then raised after the pieces, as a stream breaking off would.
    """

    text: str = ""
    delay_s: float = 0.0
    error: Exception | None = None
    pieces: tuple[str, ...] = ()


class ScriptedModel:
    def __init__(
        self, replies: Sequence[str | Scripted], *, name: str = "scripted", offline: bool = False
    ) -> None:
        self.name = name
        self.offline = offline  # True: stands in for the echo model (guards skip)
        self._replies = [r if isinstance(r, Scripted) else Scripted(text=r) for r in replies]
        self.calls: list[tuple[list[Message], ModelSettings]] = []

    def _next(self, messages: Sequence[Message], settings: ModelSettings) -> Scripted:
        if len(self.calls) >= len(self._replies):
            raise LLMError(f"{self.name}: unexpected call #{len(self.calls) + 1}, script exhausted")
        step = self._replies[len(self.calls)]
        self.calls.append((list(messages), settings))
        return step

    def _completion(
        self, step: Scripted, messages: Sequence[Message], settings: ModelSettings, started: float
    ) -> Completion:
        text = "".join(step.pieces) or step.text
        return Completion(
            text=text,
            model=settings.model or self.name,
            tokens_in=sum(len(m.content.split()) for m in messages),
            tokens_out=len(text.split()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        step = self._next(messages, settings)
        started = time.perf_counter()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            raise step.error
        return self._completion(step, messages, settings, started)

    async def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        step = self._next(messages, settings)
        started = time.perf_counter()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        for piece in step.pieces or ((step.text,) if step.error is None else ()):
            yield piece
        if step.error is not None:
            raise step.error
        yield self._completion(step, messages, settings, started)

    def assert_consumed(self) -> None:
        left = len(self._replies) - len(self.calls)
        if left:
            raise AssertionError(f"{self.name}: {left} scripted replies were never requested")


ReplyFn = Callable[[Sequence[Message], ModelSettings], str | Awaitable[str]]


class FunctionModel:
    """A model whose reply is ``fn(messages, settings)`` (sync or async)."""

    def __init__(self, fn: ReplyFn, *, name: str = "function", offline: bool = False) -> None:
        self.name = name
        self.offline = offline
        self._fn = fn
        self.calls = 0

    async def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        """The computed reply as one piece (a function answers all at once)."""
        async for delta in stream_whole(await self.complete(messages, settings=settings)):
            yield delta

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        self.calls += 1
        started = time.perf_counter()
        result = self._fn(messages, settings)
        text = await result if isinstance(result, Awaitable) else result
        return Completion(
            text=text,
            model=settings.model or self.name,
            tokens_in=sum(len(m.content.split()) for m in messages),
            tokens_out=len(text.split()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )
