"""A streamed reply as the bot passed it on, so a reply cut off at shutdown is on record as seen.

The pipeline shows a streamed reply through the adapter's view and commits
each chunk to the log first (audit before send); its own record of the stream
(chunks, characters shown, how it ended) becomes the decision's only when the
pipeline returns, and the bot ends the view and records the end only after the
decision is on record. Shutdown can cancel either step. :class:`ShownReply`
stands between the pipeline and both the view and the log, so the bot still
knows which chunks went on record, which of them reached the view and what the
user was last shown. :func:`record_cut_off_stream` (cut off before the decision
was on record) and :func:`record_cut_off_after` (once it was) leave the view on
a truthful last message if it takes it in time, and write the stream's end row
and a delivery that say what the user saw and how the view was left.
"""

from __future__ import annotations

import asyncio
import time

from adapters.live import CUT_OFF_NOTE
from middleware.decision_log.storage import DecisionStore
from middleware.pipeline.streaming import ChunkRecorder, ReplyView, StreamSettings
from middleware.types import Decision, StreamChunk, StreamRecord

CUT_OFF = "cut off at shutdown"  # the delivery of a message cut off at shutdown


class ShownReply:
    """The adapter's view and the chunk recorder of one streamed reply, remembering what
    was last shown (to replace it if need be) and the chunks on record under its id."""

    def __init__(self, view: ReplyView) -> None:
        self.view = view
        self.text = ""  # what the view was last given
        self.decision_id: str | None = None  # set when the reply streams: its chunks' id
        self._recorder: ChunkRecorder | None = None
        self._settings = StreamSettings()
        self._started = 0.0
        self._chunks: list[StreamChunk] = []  # committed (or being committed) to the log
        self._shown_chunks = 0  # how many of them the view was given
        self._updates = 0
        self._first_ms: float | None = None
        self._last_ms: float | None = None

    def start(self, decision_id: str, recorder: ChunkRecorder, settings: StreamSettings) -> None:
        """The reply streams under ``decision_id``; each chunk goes to ``recorder`` first."""
        self.decision_id, self._recorder, self._settings = decision_id, recorder, settings
        self._started = time.perf_counter()

    @property
    def streamed(self) -> bool:
        """Whether any chunk went to the log under :attr:`decision_id` (so rows exist)."""
        return bool(self._chunks)

    # -- ChunkRecorder, for the pipeline ----------------------------------------------

    async def record_stream_chunk(self, decision_id: str, chunk: StreamChunk, text: str) -> None:
        assert self._recorder is not None, "start() comes before the first chunk"
        # Listed before the await: a cancelled caller's write may still commit.
        self._chunks.append(chunk)
        await self._recorder.record_stream_chunk(decision_id, chunk, text)

    # -- ReplyView, for the pipeline --------------------------------------------------

    async def show(self, text: str) -> None:
        self.text = text
        self._shown_chunks = len(self._chunks)
        self._updates += 1
        await self.view.show(text)
        self._last_ms = round((time.perf_counter() - self._started) * 1000, 3)
        if self._first_ms is None:
            self._first_ms = self._last_ms

    async def retract(self, text: str) -> None:
        self.text = text
        await self.view.retract(text)

    # -- shutdown ---------------------------------------------------------------------

    def cut_off_reply(self) -> str:
        """What the view is left on when the reply is cut off: the text shown, then a note."""
        return f"{self.text}\n\n{CUT_OFF_NOTE}" if self.text else ""

    def cut_off(self) -> StreamRecord:
        """The stream as far as it went: each chunk on record (one committed but cut off
        before the view had it is "not shown"), the characters shown, and a note saying
        it was cut off at shutdown; :func:`record_cut_off_stream` adds how the view was left."""
        chunks = [
            c if i < self._shown_chunks else c.model_copy(
                update={"released": False, "chars": 0, "shown_chars": len(self.text)}
            )
            for i, c in enumerate(self._chunks)
        ]  # fmt: skip
        s = self._settings
        return StreamRecord(
            chunk_chars=s.chunk_chars, context_chars=s.context_chars, max_hold_ms=s.max_hold_ms,
            chunks=chunks, shown_chars=len(self.text), updates=self._updates,
            first_visible_ms=self._first_ms, last_visible_ms=self._last_ms,
            note=f"{CUT_OFF} after {self.shown_summary()} were shown",
        )  # fmt: skip

    async def replace(self, text: str, timeout_s: float) -> str | None:
        """Give the view ``text`` in place of what it shows, if that takes at most
        ``timeout_s``; None when it did, else why the view was left as it was."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.retract(text)
        except TimeoutError:
            return f"left as shown: the view could not be updated within {timeout_s:.1f} s"
        except Exception as exc:  # a view should not raise; one that does costs no record
            return f"left as shown: updating the view failed ({type(exc).__name__})"
        return None

    def shown_summary(self) -> str:
        """What the user saw, for the record: characters and chunks."""
        return f"{len(self.text)} characters in {self._shown_chunks} chunk(s)"


async def record_cut_off_stream(
    log: DecisionStore, decision: Decision, shown: ShownReply, budget_s: float
) -> None:
    """A reply cut off mid-stream, on record as the user saw it, within ``budget_s``.

    ``decision`` is its cut-off decision, under the id its chunks are on record
    under; it is recorded with the reply the view is then left on (the text shown
    and :data:`CUT_OFF_NOTE`), the view is given that reply if it takes it in half
    of what is left of the budget, and the stream's end row (which chunks were
    shown, how the view was left) and the delivery say what the user saw: "failed"
    with the characters shown, or "none" if nothing was. Raises LogUnavailable, or
    TimeoutError when the budget ran out, for the caller to report.
    """
    decision.reply = shown.cut_off_reply()
    stream = shown.cut_off()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    async with asyncio.timeout_at(deadline):
        await log.record(decision)  # before the view shows its reply
    status, error = "none", CUT_OFF
    if shown.text:
        seen = shown.shown_summary()  # before the view is given the note
        failure = await shown.replace(decision.reply, (deadline - loop.time()) / 2)
        if failure is None:  # not a retraction: what was shown stays, the note follows
            stream.updates += 1
        else:
            stream.delivery_errors.append(failure)
        left = failure or "left on screen; the view was given a cut-off note after it"
        stream.note = f"{stream.note}; {left}"
        status, error = "failed", f"{CUT_OFF} after {seen} were shown; {left}"
    async with asyncio.timeout_at(deadline):
        await log.record_stream_end(decision.id, stream)
        await log.record_delivery(decision.id, status, error)


async def record_cut_off_after(
    log: DecisionStore, decision: Decision, shown: ShownReply | None, budget_s: float
) -> None:
    """A message cut off once its ``decision`` was on record, before it was delivered.

    A streamed reply that showed text is still left on the decision's message if
    the view takes it in half of ``budget_s`` (a late block retracts what was
    shown, a stream that broke off gets its note), as the normal end of a stream
    does; its end row and the delivery ("failed") say what the user was shown.
    Nothing shown: a delivery "none". Raises as :func:`record_cut_off_stream`.
    """
    stream = decision.stream
    async with asyncio.timeout(budget_s):
        if shown is None or stream is None or not stream.shown_chars:
            await log.record_delivery(decision.id, "none", CUT_OFF)
            return
        left = "the whole reply was shown"
        if len(decision.reply) != stream.shown_chars:  # as `finish` decides it
            failure = await shown.replace(decision.reply, budget_s / 2)
            if failure is None:
                stream.retracted, stream.updates = True, stream.updates + 1
            else:
                stream.delivery_errors.append(failure)
            left = failure or "then replaced by the decision's final message"
        error = f"{CUT_OFF} after {stream.shown_chars} characters were shown; {left}"
        stream.note = stream.note or error
        await log.record_stream_end(decision.id, stream)
        await log.record_delivery(decision.id, "failed", error)
