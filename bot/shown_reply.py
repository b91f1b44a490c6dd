"""A streamed reply as the bot passed it on, so a reply cut off at shutdown is on record as seen.

The pipeline shows a streamed reply through the adapter's view and commits
each chunk to the log first (audit before send); its own record of the stream
(chunks, characters shown, how it ended) becomes the decision's only when the
pipeline returns. Shutdown cancels it before that, and the record goes with
its task. :class:`ShownReply` stands between the pipeline and both the view
and the log, so the bot still knows which chunks went on record, which of them
reached the view and what the user was last shown: :meth:`ShownReply.cut_off`
turns that into the stream's end record, and the delivery says the same.
"""

from __future__ import annotations

import asyncio
import time

from adapters.live import CUT_OFF_NOTE
from middleware.pipeline.streaming import ChunkRecorder, ReplyView, StreamSettings
from middleware.types import StreamChunk, StreamRecord

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
        it was cut off at shutdown; :meth:`leave` adds how the view was left."""
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
            note=f"{CUT_OFF} after {self._summary()} were shown",
        )  # fmt: skip

    async def leave(self, record: StreamRecord, timeout_s: float) -> tuple[str, str]:
        """Leave the view on :meth:`cut_off_reply` if that takes at most ``timeout_s``, put
        the outcome on ``record`` (from :meth:`cut_off`); returns the delivery's status and
        error: "none" if nothing was shown, else "failed" and what the user was left with."""
        if not self.text:
            return "none", CUT_OFF
        try:
            async with asyncio.timeout(timeout_s):
                await self.view.retract(self.cut_off_reply())
        except TimeoutError:
            left = f"left as shown: a cut-off note could not be added within {timeout_s:.1f} s"
            record.delivery_errors.append(left)
        except Exception as exc:  # a view should not raise; one that does costs no record
            left = f"left as shown: adding a cut-off note failed ({type(exc).__name__})"
            record.delivery_errors.append(left)
        else:
            # Not a retraction: what was shown stays (screened, on record), the note follows.
            record.updates += 1
            left = "left on screen; the view was given a cut-off note after it"
        record.note = f"{record.note}; {left}"
        return "failed", f"{CUT_OFF} after {self._summary()} were shown; {left}"

    def _summary(self) -> str:
        return f"{len(self.text)} characters in {self._shown_chunks} chunk(s)"
