"""The pipeline against the OpenAI-compatible stub, through the real `openai` client.

Concurrency is proven from the stub's own request records and from events a
guard waits on, never from timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from middleware.guards.config import MaxLengthGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.max_length import MaxLengthGuard
from middleware.llm.model import Completion, Delta, Message, ModelSettings
from middleware.llm.openai_model import OpenAIChatModel
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.pipeline.streaming import StreamSettings
from middleware.types import Action, ChatRequest, Outcome, Stage, Turn, Verdict
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.stream_support import RecordingView


class EventGuard:
    """A guard whose verdict is released by the test: ``await release`` then judge."""

    local = False
    offline = False

    def __init__(
        self, name: str, release: Callable[[], asyncio.Future[object] | object], *, unsafe: bool
    ) -> None:
        self.name = name
        self.release = release
        self.unsafe = unsafe
        self.finished = asyncio.Event()

    async def check(self, text: str, context: GuardContext) -> Verdict:
        waiter = self.release()
        if asyncio.isfuture(waiter) or asyncio.iscoroutine(waiter):
            await waiter
        self.finished.set()
        return verdict(self.name, context, unsafe=self.unsafe, category="test", score=1.0)


def guard_cfg(name: str, **kw: object) -> MaxLengthGuardConfig:
    # Any concrete config carries the shared policy fields; the kind is irrelevant here.
    return MaxLengthGuardConfig(name=name, kind="max_length", **kw)  # type: ignore[arg-type]


_models: list[OpenAIChatModel] = []


@pytest.fixture(autouse=True)
async def _close_models() -> AsyncIterator[None]:
    yield
    while _models:
        await _models.pop().close()


def policy_for(
    stub: StubOpenAI,
    *guards: ConfiguredGuard,
    stream: bool = False,
    max_retries: int = 0,
    **kw: object,
) -> PipelinePolicy:
    model = OpenAIChatModel(
        model="stub-model",
        api_key="sk-test",
        base_url=stub.base_url,
        max_retries=max_retries,
        stream=stream,
    )
    _models.append(model)
    return PipelinePolicy(model=model, guards=guards, **kw)  # type: ignore[arg-type]


def request(text: str = "hello there") -> ChatRequest:
    return ChatRequest(platform="test", channel_id="c1", user_id="u1", text=text)


@pytest.mark.parametrize("stream", [False, True])
async def test_blocking_guard_closes_generation_request(stub_llm: StubOpenAI, stream: bool) -> None:
    stub_llm.script = lambda _r: Reply(text="a long answer " * 20, delay_s=30)
    # The guard blocks only once the stub has *received* the generation request,
    # so this proves both that they ran together and that the block closed it.
    guard = EventGuard("blocker", stub_llm.request_seen.wait, unsafe=True)
    policy = policy_for(stub_llm, ConfiguredGuard(guard_cfg("blocker"), guard), stream=stream)

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.BLOCKED
    assert decision.blocked_by == "blocker"
    assert decision.reply == policy.refusal
    generation = stub_llm.chat_requests()[0]
    await asyncio.wait_for(generation.done.wait(), 5)
    assert generation.closed_early
    assert decision.candidates[0].error == "cancelled: an input guard blocked"
    assert decision.candidates[0].text == ""


class Returned:
    """Wraps a model and sets ``returned`` once a completion is back in the pipeline."""

    def __init__(self, model: OpenAIChatModel) -> None:
        self.model = model
        self.name = model.name
        self.offline = model.offline
        self.returned = asyncio.Event()

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        completion = await self.model.complete(messages, settings=settings)
        self.returned.set()
        return completion

    def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        return self.model.stream(messages, settings=settings)  # unused: a ChatModel has it


async def test_reply_waits_for_every_input_guard(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(text="the answer")
    release = asyncio.Event()
    slow = EventGuard("slow", release.wait, unsafe=False)
    policy = policy_for(stub_llm, ConfiguredGuard(guard_cfg("slow", timeout_s=30), slow))
    model = Returned(policy.model)  # type: ignore[arg-type]
    policy = dataclasses.replace(policy, model=model)

    task = asyncio.create_task(Pipeline().run(request(), policy))
    await model.returned.wait()
    # The reply is in the pipeline's hands, the guard has not finished: it must be held.
    await asyncio.sleep(0)
    assert not task.done()
    assert not slow.finished.is_set()
    release.set()
    decision = await task
    assert slow.finished.is_set()
    assert decision.action is Action.REPLIED
    assert decision.reply == "the answer"
    assert stub_llm.chat_requests()[0].outcome == "completed"


@pytest.mark.parametrize(
    ("on_error", "action"), [("block", Action.BLOCKED), ("allow", Action.REPLIED)]
)
async def test_guard_timeout_follows_on_error(
    stub_llm: StubOpenAI, on_error: str, action: Action
) -> None:
    stub_llm.script = lambda _r: Reply(text="fine")
    never = asyncio.Event()
    hung = EventGuard("hung", never.wait, unsafe=False)
    cfg = guard_cfg("hung", timeout_s=0.05, on_error=on_error)
    decision = await Pipeline().run(request(), policy_for(stub_llm, ConfiguredGuard(cfg, hung)))

    assert decision.action is action
    (v,) = decision.verdicts
    assert v.outcome is Outcome.ERROR
    assert v.blocking is (on_error == "block")
    assert "timed out" in v.reason
    assert not hung.finished.is_set()


class RaisingGuard:
    name = "broken"
    local = False
    offline = False

    async def check(self, text: str, context: GuardContext) -> Verdict:
        raise RuntimeError("boom")


async def test_guard_exception_is_error_verdict_fail_closed(stub_llm: StubOpenAI) -> None:
    decision = await Pipeline().run(
        request(), policy_for(stub_llm, ConfiguredGuard(guard_cfg("broken"), RaisingGuard()))
    )
    assert decision.action is Action.BLOCKED
    assert decision.verdicts[0].outcome is Outcome.ERROR
    assert "RuntimeError: boom" in decision.verdicts[0].reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(status=429, headers={"retry-after": "0"}), "HTTP 429"),
        (Reply(raw_body="{not json"), "malformed"),
        (Reply(raw_body='{"choices": []}'), "no choices"),
    ],
)
async def test_llm_errors_become_clear_error_reply(
    stub_llm: StubOpenAI, reply: Reply, reason: str
) -> None:
    stub_llm.script = lambda _r: reply
    decision = await Pipeline().run(request(), policy_for(stub_llm))
    assert decision.action is Action.ERROR
    assert reason in (decision.error or "")
    assert decision.reply.startswith("Sorry, I couldn't produce a reply right now")
    assert reason not in decision.reply  # the detail is for the operator (the decision)


async def test_retries_recover_from_rate_limit(stub_llm: StubOpenAI) -> None:
    def script(rec: Recorded) -> Reply:
        first = len(stub_llm.chat_requests()) == 1
        return Reply(status=429, headers={"retry-after": "0"}) if first else Reply(text="ok now")

    stub_llm.script = script
    decision = await Pipeline().run(request(), policy_for(stub_llm, max_retries=2))
    assert decision.action is Action.REPLIED
    assert decision.reply == "ok now"
    assert len(stub_llm.chat_requests()) == 2


async def test_model_timeout_is_error_reply_and_closes_request(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(text="late", delay_s=30)
    decision = await Pipeline().run(request(), policy_for(stub_llm, timeout_s=0.2))
    assert decision.action is Action.ERROR
    assert "timed out" in (decision.error or "")
    record = stub_llm.chat_requests()[0]
    await asyncio.wait_for(record.done.wait(), 5)
    assert record.closed_early


async def test_output_guard_blocks_unsafe_reply(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(text="x" * 50)
    cfg = guard_cfg("len", stage="output")
    cfg = cfg.model_copy(update={"max_chars": 10})
    decision = await Pipeline().run(
        request(), policy_for(stub_llm, ConfiguredGuard(cfg, MaxLengthGuard(cfg)))
    )
    assert decision.action is Action.BLOCKED
    assert decision.blocked_by == "len"
    assert decision.reply == "Sorry, I can't help with that."
    (v,) = decision.verdicts
    assert v.stage is Stage.OUTPUT and v.candidate_index == 0 and v.blocking


async def test_decision_records_timings_tokens_and_parallel_saving(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(text="four words right here", tokens_in=12)
    release = asyncio.Event()
    guard = EventGuard("g", release.wait, unsafe=False)

    async def finish_guard_after_generation() -> None:
        await stub_llm.request_seen.wait()
        await stub_llm.chat_requests()[0].done.wait()
        release.set()

    helper = asyncio.create_task(finish_guard_after_generation())
    decision = await Pipeline().run(
        request(), policy_for(stub_llm, ConfiguredGuard(guard_cfg("g", timeout_s=30), guard))
    )
    await helper
    assert decision.action is Action.REPLIED
    assert decision.tokens_in == 12 and decision.tokens_out == 4
    t = decision.timings
    # The guard finished only after the generation did, so the input stage spans it,
    # and the saving is what running one after the other would have added.
    assert t.total_ms >= t.input_guards_ms >= t.generation_ms > 0
    sequential = t.input_guards_ms + t.generation_ms + t.output_guards_ms + t.selection_ms
    assert t.saved_ms == round(max(0.0, sequential - t.total_ms), 3)
    assert decision.llm_calls[0].purpose == "generation"


async def test_too_long_input_refused_without_model_call(stub_llm: StubOpenAI) -> None:
    decision = await Pipeline().run(request("x" * 100), policy_for(stub_llm, max_input_chars=10))
    assert decision.action is Action.BLOCKED
    assert "too long" in decision.reply
    assert stub_llm.requests == []


async def test_api_key_and_parameters_reach_the_server(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(text="hi")
    policy = policy_for(stub_llm, temperature=0.3, max_tokens=50)
    decision = await Pipeline().run(request("what's up"), policy)
    assert decision.action is Action.REPLIED
    (rec,) = stub_llm.chat_requests()
    assert rec.headers["Authorization"] == "Bearer sk-test"
    assert rec.body["model"] == "stub-model"
    assert rec.body["temperature"] == 0.3 and rec.body["max_tokens"] == 50
    assert rec.body["messages"][-1] == {"role": "user", "content": "what's up"}


@pytest.mark.parametrize("stream", [False, True])
async def test_the_history_is_read_once_the_input_guards_requests_are_out(
    stub_llm: StubOpenAI, stream: bool
) -> None:
    """A blocked message waits on the guard's request alone: the history read (a
    thread hop that competes for the GIL) starts only once that request went out."""
    order: list[str] = []

    def started() -> None:
        order.append("guard")  # in the step in which a remote guard sends its request

    async def history() -> list[Turn]:
        order.append("history")
        return []

    guard = EventGuard("g", started, unsafe=False)
    policy = policy_for(stub_llm, ConfiguredGuard(guard_cfg("g"), guard), stream=stream)
    view = RecordingView() if stream else None
    settings = StreamSettings(chunk_chars=20, context_chars=40, max_hold_ms=0) if stream else None
    decision = await Pipeline().run(request(), policy, view=view, stream=settings, history=history)
    assert decision.action is Action.REPLIED
    assert order == ["guard", "history"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("unsafe", [False, True])
async def test_input_guards_run_while_the_history_is_read(
    stub_llm: StubOpenAI, unsafe: bool, stream: bool
) -> None:
    turns = [Turn(role="user", content="earlier question"), Turn(role="assistant", content="ok")]
    read = asyncio.Event()  # the history read finishes only when the test says so

    async def history() -> list[Turn]:
        await read.wait()
        return turns

    guard = EventGuard("g", lambda: None, unsafe=unsafe)
    policy = policy_for(stub_llm, ConfiguredGuard(guard_cfg("g"), guard), stream=stream)
    view = RecordingView() if stream else None
    settings = StreamSettings(chunk_chars=20, context_chars=40, max_hold_ms=0) if stream else None
    run = asyncio.create_task(
        Pipeline().run(request(), policy, view=view, stream=settings, history=history)
    )
    await guard.finished.wait()  # the guard judged while the history was still being read
    assert stub_llm.chat_requests() == []  # generation waits for the history
    read.set()
    decision = await run

    assert decision.request.history == tuple(turns)  # on record, blocked or not
    if unsafe:  # blocked before the history came back: generation was never sent
        assert decision.action is Action.BLOCKED and stub_llm.chat_requests() == []
        return
    assert decision.action is Action.REPLIED
    assert decision.stream is not None if stream else decision.stream is None
    (generation,) = stub_llm.chat_requests()
    assert generation.body.get("stream", False) is stream
    assert [m["content"] for m in generation.body["messages"]][-3:] == [
        "earlier question",
        "ok",
        "hello there",
    ]
