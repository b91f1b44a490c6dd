"""The pipeline: input guards and generation at the same time, then output guards.

All candidates and all input guards start together. A blocking input verdict
cancels every candidate still generating (closing its HTTP request); a
candidate's reply waits behind a gate until every input guard has passed, and
then goes through the output guards. Nothing unscreened leaves this module.
The conversation history is read while the input guards judge (generation waits
for it), on the streamed path as on this one.

Given a :class:`~middleware.pipeline.streaming.ReplyView` and stream settings,
a single-candidate reply is streamed instead: the same gate, with each chunk
screened and shown as it is generated (:mod:`.streaming`). With ``best_of > 1``
nothing is streamed: the chosen reply is shown whole once it is chosen, so no
text of a discarded candidate is ever shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from middleware.errors import LLMError
from middleware.guards.guard import GuardContext
from middleware.llm.model import Message, ModelSettings
from middleware.pipeline.accounting import Run, account, ms
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy
from middleware.pipeline.screening import screen
from middleware.pipeline.streaming import ChunkRecorder, ReplyView, StreamedReply, StreamSettings
from middleware.selection.selector import fastest
from middleware.types import (
    Action,
    Candidate,
    ChatRequest,
    Decision,
    Selection,
    Stage,
    Turn,
    Verdict,
    new_id,
)

CANCELLED = "cancelled"
History = Callable[[], Awaitable[Sequence[Turn]]]  # reads the earlier turns of a conversation


def user_reason(errors: Sequence[str]) -> str:
    """What a user may read of why no reply came: never a URL, a status or a server's body."""
    if errors and all("timed out" in e for e in errors):
        return "the model took too long to answer"
    return "the model could not answer"


def policy_error_reply(policy: PipelinePolicy) -> Callable[[str], str]:
    """The user's error reply for a model error (``{reason}`` filled in plainly)."""
    # replace, not format: an operator's template may contain other braces
    return lambda error: policy.error_reply.replace("{reason}", user_reason([error]))


def build_messages(policy: PipelinePolicy, request: ChatRequest) -> list[Message]:
    messages = [Message("system", policy.system_prompt)] if policy.system_prompt else []
    messages.extend(Message(t.role, t.content) for t in request.history)
    messages.append(Message("user", request.text))
    return messages


def _model_settings(policy: PipelinePolicy, cand: Candidate) -> ModelSettings:
    cand.temperature = policy.temperature_for(cand.index)
    cand.model = policy.model_for(cand.index) or policy.model.name
    return ModelSettings(
        temperature=cand.temperature,
        max_tokens=policy.max_tokens,
        timeout_s=policy.timeout_s,
        model=policy.model_for(cand.index),
    )


class Pipeline:
    async def run(
        self,
        request: ChatRequest,
        policy: PipelinePolicy,
        *,
        view: ReplyView | None = None,
        stream: StreamSettings | None = None,
        recorder: ChunkRecorder | None = None,
        decision_id: str | None = None,
        history: History | None = None,
    ) -> Decision:
        """Answer ``request``; with ``view`` and ``stream`` (and one candidate), streamed.

        ``history`` reads the earlier turns, which only generation needs: the input
        guards (they screen the message alone) judge while it is read, streamed or
        not, and generation waits for it. A message too long to screen skips it.

        A streamed run shows released chunks in ``view`` (each given to
        ``recorder`` first); the caller records the decision and then calls
        :func:`~middleware.pipeline.streaming.finish` to leave the view on the
        final message. ``decision_id`` names the decision the chunks belong to.
        """
        started = time.perf_counter()
        if (too_long := policy.length_verdict(request.text)) is not None:
            return self._too_long(request, too_long, policy)  # nothing generated: no history
        if view is not None and stream is not None and policy.best_of <= 1:
            return await self._run_streamed(
                request, policy, view, stream, recorder, decision_id or new_id(), started, history
            )
        input_guards = policy.guards_for(Stage.INPUT, request.channel_id)
        output_guards = policy.guards_for(Stage.OUTPUT, request.channel_id)
        runs = [Run(Candidate(index=i)) for i in range(max(1, policy.best_of))]
        gate = asyncio.Event()  # set once every input guard has passed
        sent = asyncio.Event()  # the input guards' requests are out
        async with _one_error(), asyncio.TaskGroup() as tg:
            read = _read(tg, request, history, sent)
            tasks = [
                tg.create_task(self._candidate(run, read, request, policy, output_guards, gate))
                for run in runs
            ]
            await asyncio.sleep(0)  # let the generation requests start before CPU-bound guards
            ctx = GuardContext(Stage.INPUT, request)
            screened = await screen(input_guards, request.text, ctx, sent=sent.set)
            input_verdicts, blocked = screened.verdicts, screened.blocked
            input_done = time.perf_counter()
            if blocked:
                cancel_reason = "cancelled: an input guard blocked"
                for task in tasks:
                    task.cancel()
            else:
                gate.set()
                cancel_reason = "cancelled: another candidate passed first"
                if policy.best_of > 1 and policy.selection == "first":
                    await _first_safe(tasks)
        for run, task in zip(runs, tasks, strict=True):
            if task.cancelled() or run.candidate.error == CANCELLED:
                run.candidate.error = cancel_reason
        request = read.result() if read is not None else request
        decision = Decision(request=request, action=Action.ERROR, verdicts=input_verdicts)
        if blocked:
            self._blocked(decision, input_verdicts, policy)
        else:
            await self._choose(decision, runs, request, policy)
        account(decision, runs, policy, started, input_done)
        return decision

    async def _candidate(
        self,
        run: Run,
        read: asyncio.Task[ChatRequest] | None,
        request: ChatRequest,
        policy: PipelinePolicy,
        output_guards: Sequence[ConfiguredGuard],
        gate: asyncio.Event,
    ) -> bool:
        """Generate, wait for the input gate, screen. Returns True when safe."""
        cand = run.candidate
        settings = _model_settings(policy, cand)
        # Yield once so remote input guards (started just after us) send their
        # requests first: they are usually the shorter path, and the one a block waits on.
        await asyncio.sleep(0)
        messages = await _messages(policy, read, request)
        began = time.perf_counter()
        try:
            async with asyncio.timeout(policy.timeout_s):
                completion = await policy.model.complete(messages, settings=settings)
        except TimeoutError:
            cand.error = f"model timed out after {policy.timeout_s:g}s"
            return False
        except LLMError as exc:
            cand.error = str(exc)
            return False
        except Exception as exc:  # one broken candidate must not sink the others
            cand.error = f"model call failed: {type(exc).__name__}"
            return False
        except asyncio.CancelledError:
            cand.error = CANCELLED  # the reason is filled in by whoever cancelled
            raise
        finally:
            cand.latency_ms = ms(time.perf_counter() - began)
        run.generated_at = time.perf_counter()
        cand.text, cand.model = completion.text, completion.model
        cand.tokens_in, cand.tokens_out = completion.tokens_in, completion.tokens_out
        cand.error = None
        if not cand.text.strip():
            cand.error = "model returned an empty reply"
            return False
        await gate.wait()
        screening = time.perf_counter()  # output guard time excludes the wait for the gate
        ctx = GuardContext(Stage.OUTPUT, request, cand.index)
        screened = await screen(output_guards, cand.text, ctx)
        run.verdicts, cand.text = screened.verdicts, screened.text
        run.screen_ms = ms(time.perf_counter() - screening)
        cand.safe = not screened.blocked
        return cand.safe

    async def _run_streamed(
        self,
        request: ChatRequest,
        policy: PipelinePolicy,
        view: ReplyView,
        stream: StreamSettings,
        recorder: ChunkRecorder | None,
        decision_id: str,
        started: float,
        history: History | None,
    ) -> Decision:
        input_guards = policy.guards_for(Stage.INPUT, request.channel_id)
        output_guards = policy.guards_for(Stage.OUTPUT, request.channel_id)
        run = Run(Candidate(index=0))
        settings = _model_settings(policy, run.candidate)
        streamer = StreamedReply(
            decision_id=decision_id,
            view=view,
            recorder=recorder,
            settings=stream,
            chunk_guards=[g for g in output_guards if g.config.stream == "chunk"],
            final_guards=[g for g in output_guards if g.config.stream == "final"],
            ctx=GuardContext(Stage.OUTPUT, request, 0),
            started=started,
        )
        gate = asyncio.Event()
        sent = asyncio.Event()
        async with _one_error(), asyncio.TaskGroup() as tg:
            read = _read(tg, request, history, sent)

            async def generate() -> None:  # once the history is read, as a candidate does
                messages = await _messages(policy, read, request)
                await streamer.run(policy.model, messages, settings, gate, policy.timeout_s)

            task = tg.create_task(generate())
            await asyncio.sleep(0)  # let the generation request start before CPU-bound guards
            ctx = GuardContext(Stage.INPUT, request)
            screened = await screen(input_guards, request.text, ctx, sent=sent.set)
            input_done = time.perf_counter()
            if screened.blocked:
                task.cancel()  # nothing was shown: the gate never opened
            else:
                gate.set()
        request = read.result() if read is not None else request
        decision = Decision(
            id=decision_id, request=request, action=Action.ERROR, verdicts=screened.verdicts
        )
        decision.stream = streamer.out.record
        if screened.blocked:
            run.candidate.error = "cancelled: an input guard blocked"
            self._blocked(decision, screened.verdicts, policy)
        else:
            streamer.out.apply(decision, run.candidate, policy_error_reply(policy))
            run.screen_ms = sum(v.latency_ms for v in streamer.out.verdicts)
            if streamer.out.blocked:
                self._blocked(decision, streamer.out.blocked, policy)
        account(decision, [run], policy, started, input_done)
        return decision

    async def _choose(
        self, decision: Decision, runs: list[Run], request: ChatRequest, policy: PipelinePolicy
    ) -> None:
        for run in runs:
            decision.verdicts.extend(run.verdicts)
        safe = [r.candidate for r in runs if r.candidate.safe]
        if not safe:
            unsafe = [v for r in runs for v in r.verdicts if v.blocking]
            if unsafe:
                self._blocked(decision, unsafe, policy)
            else:
                errors = sorted({r.candidate.error or "no reply" for r in runs})
                decision.error = "; ".join(errors)  # the detail: for `guardbot show`
                # replace, not format: an operator's template may contain other braces
                decision.reply = policy.error_reply.replace("{reason}", user_reason(errors))
            return
        chosen, selection = await self._select(decision, safe, request, policy)
        chosen.chosen = True
        decision.action = Action.REPLIED
        decision.reply = decision.reply or chosen.text
        decision.selection = selection

    async def _select(
        self,
        decision: Decision,
        safe: list[Candidate],
        request: ChatRequest,
        policy: PipelinePolicy,
    ) -> tuple[Candidate, Selection]:
        if policy.best_of <= 1:
            return safe[0], Selection(method="single")
        # `first` before `only_safe`: with `first` the others were cancelled on purpose.
        if policy.selection == "first" or policy.selector is None:
            winner = fastest(safe)
            return winner, Selection(method="first", reasoning="first candidate to pass its guards")
        if len(safe) == 1:
            return safe[0], Selection(method="only_safe")
        began = time.perf_counter()
        outcome = await policy.selector.select(request, safe)
        decision.timings.selection_ms = ms(time.perf_counter() - began)
        decision.llm_calls.extend(outcome.llm_calls)
        for cand in safe:
            cand.score = outcome.scores.get(cand.index, cand.score)
        by_index = {c.index: c for c in safe}
        named = by_index.get(outcome.chosen_index if outcome.chosen_index is not None else -1)
        winner = named or fastest(safe)
        if named is None:  # a selector must name a safe candidate; never index blindly
            outcome.selection.fallback_from.append(outcome.selection.method)
            outcome.selection.method = "first"
        if outcome.reply_override is not None:
            decision.reply = outcome.reply_override
        return winner, outcome.selection

    def _blocked(self, decision: Decision, verdicts: list[Verdict], policy: PipelinePolicy) -> None:
        first = next(v for v in verdicts if v.blocking)
        decision.action = Action.BLOCKED
        decision.blocked_by = first.guard
        decision.reply = policy.refusal

    def _too_long(self, request: ChatRequest, limit: Verdict, policy: PipelinePolicy) -> Decision:
        return Decision(
            request=request,
            action=Action.BLOCKED,
            blocked_by=limit.guard,
            reply=f"Sorry, that message is too long ({limit.reason}).",
            verdicts=[limit],
            config_fingerprint=policy.fingerprint,
        )


def _read(
    tg: asyncio.TaskGroup, request: ChatRequest, history: History | None, sent: asyncio.Event
) -> asyncio.Task[ChatRequest] | None:
    """The history read, once the input guards' requests are out: a blocked message
    waits on those alone, and the read's thread would compete with them for the GIL."""
    return tg.create_task(_with_history(request, history, sent)) if history is not None else None


async def _with_history(request: ChatRequest, history: History, sent: asyncio.Event) -> ChatRequest:
    await sent.wait()
    turns = tuple(await history())
    return request.model_copy(update={"history": turns}) if turns else request


async def _messages(
    policy: PipelinePolicy, read: asyncio.Task[ChatRequest] | None, request: ChatRequest
) -> list[Message]:
    # Shielded: a cancelled generation must not cancel the read that the decision needs.
    return build_messages(policy, await asyncio.shield(read) if read else request)


@contextlib.asynccontextmanager
async def _one_error() -> AsyncIterator[None]:
    """A task group's failure (the log went down, say) as the error callers handle."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


async def _first_safe(tasks: Sequence[asyncio.Task[bool]]) -> None:
    """``first`` selection: once one candidate is safe, cancel the others."""
    for next_done in asyncio.as_completed(tasks):
        if await next_done:
            break
    for task in tasks:
        task.cancel()
