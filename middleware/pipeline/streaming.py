"""Screened streaming: the contract between the pipeline and whatever shows a reply.

The pipeline releases a reply in chunks, each only after every input guard and
the output guards have passed it; an adapter shows them (by editing one message,
Slack's streaming methods, or printing). Middleware knows nothing about the
platform, so it talks to a :class:`ReplyView`; the bot wraps the adapter's view
in one that commits each chunk to the decision log before it is shown
(:class:`ChunkRecorder`).

A reply is cut into chunks by :class:`~.chunks.Chunker`. :class:`StreamedReply`
runs three stages as tasks, so screening chunk *k* overlaps generating chunk
*k+1*: reading the model, cutting, and screening-then-showing. Each chunk is
judged in a window of ``context_chars`` of the text shown before it, so a
phrase split across two chunks is still judged whole.

Each chunk is masked as the final reply is (:func:`~middleware.masking.mask_text`,
after the last words shown, :func:`~.chunks.mask_context`, whatever
``context_chars`` is) before it is recorded or shown: a model that echoes a
key or a configured secret's value never shows it, not even for a moment, and
what was shown is the final reply, so nothing is retracted for masking. The
chunker holds back a secret that the next text may complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from middleware.errors import LLMError
from middleware.guards.guard import GuardContext
from middleware.llm.model import ChatModel, Completion, Message, ModelSettings
from middleware.masking import clean, mask_text
from middleware.pipeline.chunks import Chunker, context_of, mask_context
from middleware.pipeline.policy import ConfiguredGuard
from middleware.pipeline.screening import screen
from middleware.types import (
    Action,
    Candidate,
    Decision,
    Selection,
    StreamChunk,
    StreamRecord,
    Verdict,
)

BROKE_OFF_NOTE = "[the reply was cut off: the model stopped answering mid-reply]"


class ReplyView(Protocol):
    """Where a reply is shown while it is generated.

    ``show`` gets the whole screened text released so far (each call extends
    the previous one), so a view that throttles updates simply shows the latest
    text it was given. ``retract`` replaces everything shown (a late block, or
    a stream that broke off) with ``text``. Neither raises for a platform
    failure: a view records it and the adapter reports it on the delivery.
    """

    async def show(self, text: str) -> None: ...

    async def retract(self, text: str) -> None: ...


class ChunkRecorder(Protocol):
    """Called with each chunk before it is shown; returns once it is on record.

    Raising stops the stream (nothing further is shown): the bot's recorder
    raises when the decision log cannot be written.
    """

    async def record_stream_chunk(
        self, decision_id: str, chunk: StreamChunk, text: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The windows of screened streaming: ``[pipeline]`` chunk_chars, context_chars, max_hold_ms."""

    chunk_chars: int = 200
    context_chars: int = 200
    max_hold_ms: float = 1000.0

    def record(self, final_guards: Sequence[str] = ()) -> StreamRecord:
        return StreamRecord(
            chunk_chars=self.chunk_chars,
            context_chars=self.context_chars,
            max_hold_ms=self.max_hold_ms,
            final_guards=list(final_guards),
        )


@dataclass(slots=True)
class StreamOutcome:
    """What :class:`StreamedReply` produced, for the pipeline to build the decision from."""

    record: StreamRecord
    shown: str = ""
    raw: str = ""
    completion: Completion | None = None
    error: str | None = None  # generation failed (before or after text was shown)
    blocked: list[Verdict] = field(default_factory=list)  # the verdicts that stopped it
    verdicts: list[Verdict] = field(default_factory=list)  # every output verdict, in order

    def apply(self, decision: Decision, cand: Candidate, error_reply: Callable[[str], str]) -> None:
        """Fill in the decision and the candidate of a reply streamed past the input gate.

        A block leaves ``decision`` for the caller to mark blocked (``self.blocked``).
        """
        decision.verdicts.extend(self.verdicts)
        if (done := self.completion) is not None:
            cand.model, cand.tokens_in, cand.tokens_out = (
                done.model,
                done.tokens_in,
                done.tokens_out,
            )
            cand.latency_ms = done.latency_ms
        cand.text = self.shown
        if self.blocked:
            cand.safe = False
            cand.error = None if done else "cancelled: a guard blocked mid-stream"
        elif self.error is not None:
            cand.error = decision.error = self.error
            decision.reply = error_reply(self.error)
            if self.shown:  # what was shown stays; the note says the rest never came
                self.record.note = f"model stream broke off after {len(self.shown)} characters"
                decision.error = f"{self.record.note}: {self.error}"
                decision.reply = f"{self.shown}\n\n{BROKE_OFF_NOTE}"
        elif not self.shown.strip():
            cand.error = decision.error = "model returned an empty reply"
            decision.reply = error_reply(cand.error)
        else:
            cand.safe = cand.chosen = True
            decision.action = Action.REPLIED
            decision.reply = self.shown
            decision.selection = Selection(method="single")


class StreamedReply:
    """One streamed candidate: generate, cut, screen each chunk, record it, show it."""

    def __init__(
        self,
        *,
        decision_id: str,
        view: ReplyView,
        recorder: ChunkRecorder | None,
        settings: StreamSettings,
        chunk_guards: Sequence[ConfiguredGuard],
        final_guards: Sequence[ConfiguredGuard],
        ctx: GuardContext,
        started: float,
    ) -> None:
        self.decision_id = decision_id
        self.view = view
        self.recorder = recorder
        self.settings = settings
        self.chunk_guards = chunk_guards
        self.final_guards = final_guards
        self.ctx = ctx
        self.started = started
        self.out = StreamOutcome(settings.record([g.config.name for g in final_guards]))
        # model -> cutter: text pieces, then a Completion, an LLMError or None (cancelled)
        self._pieces: asyncio.Queue[str | Completion | LLMError | None] = asyncio.Queue()
        self._ready: list[str] = []  # cut, not yet screened
        self._wake = asyncio.Event()  # a chunk is ready, or the cutter is done
        self._generated = asyncio.Event()  # the cutter saw the end of generation
        self._generation: asyncio.Task[None] | None = None
        self._stopped = False  # a guard blocked: show nothing more

    async def run(
        self,
        model: ChatModel,
        messages: Sequence[Message],
        model_settings: ModelSettings,
        gate: asyncio.Event,
        timeout_s: float,
    ) -> StreamOutcome:
        """Run until the reply is shown, stopped by a guard, or generation failed.

        ``gate`` is set once every input guard passed: nothing is screened or
        shown before. Cancelling this (an input block) cancels generation too.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                self._generation = tg.create_task(
                    self._generate(model, messages, model_settings, timeout_s)
                )
                tg.create_task(self._cut())
                tg.create_task(self._release(gate))
                if self.final_guards:
                    tg.create_task(self._final(gate))
        except BaseExceptionGroup as group:
            # The recorder failed (the log is down): the caller sees that error, not a group.
            raise group.exceptions[0] from None
        return self.out

    def stop(self) -> None:
        """A guard blocked: show nothing more, and cancel generation (closing its request)."""
        self._stopped = True
        self._wake.set()
        if self._generation is not None:
            self._generation.cancel()

    # -- the stages, each a task -----------------------------------------------------

    async def _generate(
        self,
        model: ChatModel,
        messages: Sequence[Message],
        settings: ModelSettings,
        timeout_s: float,
    ) -> None:
        # Cancellation reaches the model's own await, so its stream (request) is closed.
        try:
            async with asyncio.timeout(timeout_s):
                async for piece in model.stream(messages, settings=settings):
                    self._pieces.put_nowait(piece)
        except TimeoutError:
            self._pieces.put_nowait(LLMError(f"model timed out after {timeout_s:g}s"))
        except LLMError as exc:
            self._pieces.put_nowait(exc)
        except asyncio.CancelledError:
            self._pieces.put_nowait(None)
            raise
        except Exception as exc:  # a broken model costs this message a clear error only
            self._pieces.put_nowait(LLMError(f"model call failed: {type(exc).__name__}"))

    async def _cut(self) -> None:
        chunker = Chunker(self.settings.chunk_chars)
        hold_s = self.settings.max_hold_ms / 1000
        deadline: float | None = None  # when the pending text has waited long enough
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                item = await asyncio.wait_for(self._pieces.get(), timeout)
            except TimeoutError:
                self._put(chunker.cut(hold_expired=True))
                deadline = None  # what is left cannot be cut yet: wait for more text
                continue
            if isinstance(item, str):
                self.out.raw += item
                chunker.feed(item)
                if chunk := chunker.cut():
                    self._put(chunk)
                    deadline = None
                if chunker.pending and deadline is None:
                    deadline = time.perf_counter() + hold_s
                continue
            if isinstance(item, Completion):
                self.out.completion = item
                self._put(chunker.cut(final=True))
            elif isinstance(item, LLMError):
                self.out.error = str(item)
                self._put(chunker.cut(hold_expired=True))  # only what is whole; the rest is lost
            self._generated.set()
            self._wake.set()
            return

    def _put(self, chunk: str) -> None:
        if chunk:
            self._ready.append(chunk)
            self._wake.set()

    async def _release(self, gate: asyncio.Event) -> None:
        await gate.wait()
        index = 0
        while not self._stopped:
            await self._wake.wait()
            self._wake.clear()
            if self._ready:
                # Chunks that queued up while the last one was screened go out together.
                chunk, self._ready = "".join(self._ready), []
                await self._screen_and_show(index, chunk)
                index += 1
                self._wake.set()  # look again: more may have come meanwhile
            elif self._generated.is_set():
                return

    async def _screen_and_show(self, index: int, raw: str) -> None:
        context = context_of(self.out.shown, self.settings.context_chars)
        window = context + raw
        screened = await screen(self.chunk_guards, window, self.ctx)
        verdicts = list(screened.verdicts)
        text = raw
        if not screened.blocked and screened.text != window:
            if screened.text.startswith(context):
                text = screened.text[len(context) :]
            else:  # the masks reached into the context: mask this chunk on its own
                alone = await screen(self.chunk_guards, raw, self.ctx)
                verdicts.extend(alone.verdicts)
                text = alone.text
        text = _masked(mask_context(self.out.shown), text)
        self.out.verdicts.extend(verdicts)
        stopped = screened.blocked or self._stopped
        record = self.out.record
        chunk = StreamChunk(
            index=index,
            raw_chars=len(raw),
            chars=0 if stopped else len(text),
            shown_chars=len(self.out.shown) + (0 if stopped else len(text)),
            at_ms=_ms(time.perf_counter() - self.started),
            released=not stopped,
            verdicts=verdicts,
        )
        record.chunks.append(chunk)
        if screened.blocked:
            self.out.blocked = [v for v in verdicts if v.blocking]
            record.stopped_at_chunk = index
        if stopped:
            self.stop()
            return
        if self.recorder is not None:
            await self.recorder.record_stream_chunk(
                self.decision_id, chunk, text
            )  # audit before send
        self.out.shown += text
        record.shown_chars = len(self.out.shown)
        record.updates += 1
        await self.view.show(self.out.shown)
        record.last_visible_ms = _ms(time.perf_counter() - self.started)
        if record.first_visible_ms is None:
            record.first_visible_ms = record.last_visible_ms

    async def _final(self, gate: asyncio.Event) -> None:
        """``stream = "final"`` guards: once over the whole reply, as soon as it is generated."""
        await self._generated.wait()
        await gate.wait()
        if self._stopped or self.out.completion is None:
            return
        screened = await screen(self.final_guards, self.out.raw, self.ctx)
        self.out.verdicts.extend(screened.verdicts)
        if screened.blocked:
            self.out.blocked = [v for v in screened.verdicts if v.blocking]
            self.stop()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _masked(context: str, text: str) -> str:
    """``text`` as the final reply's masking leaves it (which runs again on all that was
    shown, and must then change nothing), masked after its context so that a value
    named there ("password: " at the end of the last chunk) is found."""
    window = mask_text(clean(context + text))
    if window.startswith(context):
        return window[len(context) :]
    return mask_text(clean(text))  # a mask reached into what was shown: this chunk alone


async def finish(view: ReplyView, decision: Decision) -> None:
    """Leave ``view`` showing the decision's final message (after it is on record).

    Nothing shown yet: the reply (or refusal) is shown whole. The reply shown
    already: nothing to do. Anything else (a block after text was shown, a
    stream that broke off): what was shown is replaced, and the record says so.
    """
    record = decision.stream
    if record is None or not record.shown_chars:
        if decision.reply:
            await view.show(decision.reply)
        if record is not None:
            record.updates += 1
        return
    if decision.reply and len(decision.reply) == record.shown_chars:
        return
    record.retracted = True
    record.updates += 1
    await view.retract(decision.reply)
