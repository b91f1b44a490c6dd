"""Scripted and function-backed models, shipped for tests, demos and replay.

`ScriptedModel` plays back a fixed list of replies and fails loudly on an
unexpected extra call (and `assert_consumed()` on a missing one), so a test
cannot silently pass while the pipeline calls the model more or less often
than it thinks. `FunctionModel` computes each reply from the messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from middleware.errors import LLMError
from middleware.llm.model import Completion, Message, ModelSettings


@dataclass(frozen=True, slots=True)
class Scripted:
    """One scripted reply: text (or an exception to raise) after an optional delay."""

    text: str = ""
    delay_s: float = 0.0
    error: Exception | None = None


class ScriptedModel:
    def __init__(
        self, replies: Sequence[str | Scripted], *, name: str = "scripted", offline: bool = False
    ) -> None:
        self.name = name
        self.offline = offline  # True: stands in for the echo model (guards skip)
        self._replies = [r if isinstance(r, Scripted) else Scripted(text=r) for r in replies]
        self.calls: list[tuple[list[Message], ModelSettings]] = []

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        if len(self.calls) >= len(self._replies):
            raise LLMError(f"{self.name}: unexpected call #{len(self.calls) + 1}, script exhausted")
        step = self._replies[len(self.calls)]
        self.calls.append((list(messages), settings))
        started = time.perf_counter()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            raise step.error
        return Completion(
            text=step.text,
            model=settings.model or self.name,
            tokens_in=sum(len(m.content.split()) for m in messages),
            tokens_out=len(step.text.split()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

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
