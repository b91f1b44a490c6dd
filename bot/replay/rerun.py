"""Re-runs logged decisions through a policy, a bounded number at a time.

Two modes. ``guards-only`` (the default) runs the input guards on the recorded
message and the output guards on the recorded replies, exactly as the
pipeline would (same runner, same timeouts and ``on_error``), but runs *every*
guard to the end instead of stopping at the first block, so the report can
say what each guard thinks now. ``full`` runs the whole pipeline again,
regenerating the reply with the configured model. Neither writes a decision
or touches an adapter: a replay posts nothing and leaves the log as it was
(apart from the record of the run itself, written by the caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from bot.audit.streamed import with_stream
from bot.config.runtime import RuntimeSettings
from bot.config.schema import Config
from bot.replay.diff import compare, failed
from bot.replay.masked import ChunkNotReplayable, carry_forward, keep_blocked_chunk
from bot.replay.results import Kind, ReplayResult
from bot.replay.select import Logged
from middleware.decision_log.storage import DecisionStore
from middleware.guards.guard import GuardContext
from middleware.pipeline.chunks import context_of
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.pipeline.screening import screen
from middleware.types import Action, Candidate, ChatRequest, Decision, Stage, Verdict

Mode = Literal["guards-only", "full"]
NOT_STORED = "text not stored ([log] store_text = false): only its hash was kept"
NO_REPLY_NOTE = (
    "output guards not run: no reply was generated when this was logged "
    "(replay with --full to generate one)"
)
CUT_NOTE = (
    "only the {chars} characters shown before chunk {chunk} stopped the stream were kept; "
    "the rest of that reply was never recorded (replay with --full to generate one)"
)
REDACTED_NOTE = "the log keeps replies after redaction, so a redacting guard sees the masked text"


@dataclass(frozen=True, slots=True)
class Screened:
    verdicts: list[Verdict]
    action: Action
    blocked_by: str | None
    note: str | None = None


def _first_blocking(verdicts: Sequence[Verdict]) -> str | None:
    return next((v.guard for v in verdicts if v.blocking), None)


def _replies_to_screen(old: Decision) -> list[Candidate]:
    """The recorded replies that were screened, else any generated before an input block."""
    screened = [c for c in old.candidates if c.safe is not None and c.text]
    return screened or [c for c in old.candidates if c.text]


async def _screen(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext, old: Decision
) -> list[Verdict]:
    # The pipeline's own screening, every guard to the end (the report shows each one).
    found = await screen(guards, text, ctx, every_guard=True)
    return carry_forward(found.verdicts, guards, text, old.verdicts)


async def _screen_stream(
    guards: Sequence[ConfiguredGuard], text: str, ctx: GuardContext, old: Decision
) -> tuple[list[Verdict], int | None]:
    """A streamed reply again chunk by chunk, with the windows it was shown with.

    The recorded chunk lengths cut the recorded (shown) text; each chunk is
    judged with the same ``context_chars`` before it; ``stream = "final"``
    guards judge the whole text. The chunk that stopped the stream then was
    not recorded: its verdicts are kept from the log (``keep_blocked_chunk``).
    Returns the verdicts and the first chunk a guard now blocks (None: the
    stream would run to its end).
    """
    assert old.stream is not None
    chunk_guards = [g for g in guards if g.config.stream == "chunk"]
    final_guards = [g for g in guards if g.config.stream == "final"]
    verdicts: list[Verdict] = []
    at = 0
    for chunk in old.stream.chunks:
        if not chunk.released:
            if chunk.index == old.stream.stopped_at_chunk:
                # Its text was never shown, so never recorded: keep what was said of it.
                found = keep_blocked_chunk(chunk_guards, chunk.verdicts)
                verdicts.extend(found)
                if _first_blocking(found):
                    return verdicts, chunk.index
            break
        window = context_of(text[:at], old.stream.context_chars) + text[at : at + chunk.chars]
        found = await _screen(chunk_guards, window, ctx, old)
        verdicts.extend(found)
        if _first_blocking(found):
            return verdicts, chunk.index
        at += chunk.chars
    if final_guards:
        verdicts.extend(await _screen(final_guards, text, ctx, old))
    return verdicts, None


async def screen_recorded(old: Decision, policy: PipelinePolicy) -> Screened:
    request = old.request
    if (limit := policy.length_verdict(request.text)) is not None:
        return Screened([limit], Action.BLOCKED, limit.guard)
    input_guards = policy.guards_for(Stage.INPUT, request.channel_id)
    verdicts = await _screen(input_guards, request.text, GuardContext(Stage.INPUT, request), old)
    if blocked_by := _first_blocking(verdicts):
        return Screened(verdicts, Action.BLOCKED, blocked_by)
    output_guards = policy.guards_for(Stage.OUTPUT, request.channel_id)
    candidates = _replies_to_screen(old)
    if not candidates:
        if old.action is Action.BLOCKED:  # blocked before any reply existed; now it passes
            return Screened(verdicts, Action.REPLIED, None, NO_REPLY_NOTE)
        return Screened(verdicts, old.action, None)
    if old.stream is not None and old.stream.chunks and len(candidates) == 1:
        out_ctx = GuardContext(Stage.OUTPUT, request, candidates[0].index)
        found, stopped = await _screen_stream(output_guards, candidates[0].text, out_ctx, old)
        verdicts.extend(found)
        blocked_by = _first_blocking(found)
        if blocked_by is None:
            cut = old.stream.stopped_at_chunk
            note = None if cut is None else CUT_NOTE.format(chars=old.stream.shown_chars, chunk=cut)
            return Screened(verdicts, Action.REPLIED, None, note)
        if stopped is None:  # no chunk stopped it: a `final` guard blocks the whole reply
            note = f"{blocked_by} (stream = final) would retract the reply after it was shown"
        elif stopped == old.stream.stopped_at_chunk:
            note = f"the stream would still stop at chunk {stopped} (its verdicts are kept)"
        else:
            note = f"the stream would now stop at chunk {stopped}"
        return Screened(verdicts, Action.BLOCKED, blocked_by, note)
    any_safe = False
    for cand in candidates:  # few candidates, each screened with its guards in parallel
        out_ctx = GuardContext(Stage.OUTPUT, request, cand.index)
        found = await _screen(output_guards, cand.text, out_ctx, old)
        verdicts.extend(found)
        any_safe = any_safe or not any(v.blocking for v in found)
    if any_safe:
        return Screened(verdicts, Action.REPLIED, None)
    return Screened(verdicts, Action.BLOCKED, _first_blocking(verdicts))


class ReplayHost(Protocol):
    """What replay uses of the bot: its runtime settings (loaded before a run), today's
    policy for a request, the pipeline (``full`` mode) and the log it reads and records in."""

    @property
    def settings(self) -> RuntimeSettings: ...

    @property
    def log(self) -> DecisionStore: ...

    @property
    def pipeline(self) -> Pipeline: ...

    def policy_for(self, request: ChatRequest) -> tuple[Config, PipelinePolicy]:
        """The config and policy the bot would apply to ``request`` now."""
        ...


class Replayer:
    """Replays one logged decision at a time against ``host``'s effective policy."""

    def __init__(self, host: ReplayHost, mode: Mode = "guards-only") -> None:
        self.host = host
        self.mode = mode

    async def replay(self, item: Logged) -> ReplayResult:
        old = item.decision
        if not item.text_stored:
            return failed(old, Kind.NOT_REPLAYABLE, NOT_STORED)
        try:
            old = await with_stream(self.host.log, old)  # replayed chunk by chunk
            config, policy = self.host.policy_for(old.request)
            if self.mode == "full":
                return await self._full(old, config, policy)
            found = await screen_recorded(old, policy)
        except ChunkNotReplayable as exc:
            return failed(old, Kind.NOT_REPLAYABLE, str(exc))
        except Exception as exc:  # one broken decision must not end the run; it is reported
            return failed(old, Kind.ERROR, f"replay failed: {type(exc).__name__}: {exc}")
        result = compare(
            old,
            found.verdicts,
            found.action,
            found.blocked_by,
            fingerprint=policy.fingerprint,
            note=found.note,
        )
        if any(f.old_outcome == "redact" and f.new_outcome == "allow" for f in result.flips):
            note = f"{result.note}; {REDACTED_NOTE}" if result.note else REDACTED_NOTE
            result = replace(result, note=note)
        return result

    async def _full(self, old: Decision, config: Config, policy: PipelinePolicy) -> ReplayResult:
        r = old.request
        history = await self.host.log.history(
            r.platform,
            r.channel_id,
            r.thread_id,
            max_turns=config.pipeline.history_turns,
            max_chars=config.pipeline.history_chars,
            before=old.id,  # the thread as it was when this message arrived
        )
        request = r.model_copy(update={"history": tuple(history)})
        new = await self.host.pipeline.run(request, policy)  # never recorded, never posted
        return compare(
            old, new.verdicts, new.action, new.blocked_by, fingerprint=policy.fingerprint
        )


async def replay_all(
    replayer: Replayer,
    items: Sequence[Logged],
    *,
    concurrency: int,
    on_result: Callable[[ReplayResult], None],
) -> None:
    """Replay ``items`` with at most ``concurrency`` in flight; cancel to stop early.

    A fixed pool of workers pulls from one shared iterator, so memory and tasks
    stay bounded however many decisions are selected, and cancelling this
    coroutine stops every worker at its next await.
    """
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            on_result(await replayer.replay(item))

    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, min(concurrency, len(items)))):
            tg.create_task(worker())
