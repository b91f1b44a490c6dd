"""Screened streaming through the real `openai` client and the streaming stub.

Every visible state is taken from a recording view; the promises are checked on
those records (each state a prefix of the screened, masked reply; nothing
unmasked, ever) and on the stub's request records (a block closes the request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from middleware.guards.blocklist import BlocklistGuard
from middleware.guards.config import (
    BlocklistGuardConfig,
    PIIGuardConfig,
    SecretsGuardConfig,
)
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.pii import PIIGuard
from middleware.guards.secrets import SecretsGuard
from middleware.llm.openai_model import OpenAIChatModel
from middleware.pipeline.chunks import Chunker, context_of
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.pipeline.streaming import BROKE_OFF_NOTE, StreamSettings, finish
from middleware.types import Action, ChatRequest, StreamChunk, Verdict
from tests.middleware.test_pipeline import EventGuard, guard_cfg
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.stream_support import RecordingView

SETTINGS = StreamSettings(chunk_chars=20, context_chars=40, max_hold_ms=60_000)
EMAIL = "jane.doe@example.com"
KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2


class Recorder:
    def __init__(self, view: RecordingView) -> None:
        self.view = view
        self.chunks: list[tuple[StreamChunk, str, int]] = []  # with states shown at record time

    async def record_stream_chunk(self, decision_id: str, chunk: StreamChunk, text: str) -> None:
        self.chunks.append((chunk, text, len(self.view.states)))


_models: list[OpenAIChatModel] = []


@pytest.fixture(autouse=True)
async def _close_models() -> AsyncIterator[None]:
    yield
    while _models:
        await _models.pop().close()


def policy(stub: StubOpenAI, *guards: ConfiguredGuard) -> PipelinePolicy:
    model = OpenAIChatModel(model="stub", api_key="sk-test", base_url=stub.base_url, max_retries=0)
    _models.append(model)
    return PipelinePolicy(model=model, guards=guards)


def pii() -> ConfiguredGuard:
    cfg = PIIGuardConfig(kind="pii", name="pii", stage="output", action="redact")
    return ConfiguredGuard(cfg, PIIGuard(cfg))


def secrets() -> ConfiguredGuard:
    cfg = SecretsGuardConfig(kind="secrets", name="secrets", stage="output", action="redact")
    return ConfiguredGuard(cfg, SecretsGuard(cfg))


def blocklist(words: list[str], *, stream: Literal["chunk", "final"] = "chunk") -> ConfiguredGuard:
    cfg = BlocklistGuardConfig(
        kind="blocklist", name="blocklist", stage="output", words=words, stream=stream
    )
    return ConfiguredGuard(cfg, BlocklistGuard(cfg))


def request(text: str = "tell me") -> ChatRequest:
    return ChatRequest(platform="test", channel_id="c1", user_id="u1", text=text)


def unscreened_chars(states: list[str], final: str) -> int:
    """Characters of any state that are not a prefix of the final screened text."""
    bad = 0
    for state in states:
        common = 0
        for a, b in zip(state, final, strict=False):
            if a != b:
                break
            common += 1
        bad += len(state) - common
    return bad


async def test_every_state_is_a_prefix_of_the_screened_reply(stub_llm: StubOpenAI) -> None:
    pieces = ["Hello there. ", "Write to jane.", "doe@exam", "ple.com today. ", "Bye now.\n"]
    stub_llm.script = lambda _r: Reply(pieces=pieces)
    view = RecordingView()
    recorder = Recorder(view)

    decision = await Pipeline().run(
        request(), policy(stub_llm, pii()), view=view, stream=SETTINGS, recorder=recorder
    )

    assert decision.action is Action.REPLIED
    assert decision.reply == "Hello there. Write to [EMAIL] today. Bye now.\n"
    assert view.states and unscreened_chars(view.states, decision.reply) == 0
    assert all(EMAIL not in s and "jane." not in s for s in view.states)
    assert decision.stream is not None and decision.stream.shown_chars == len(decision.reply)
    # Audit before send: each chunk was on record before the state that shows it.
    assert [n for _, _, n in recorder.chunks] == list(range(len(recorder.chunks)))
    assert "".join(text for _, text, _ in recorder.chunks) == decision.reply
    assert decision.stream.first_visible_ms is not None


async def test_a_key_split_across_pieces_is_never_shown_unmasked(stub_llm: StubOpenAI) -> None:
    half = len(KEY) // 2
    pieces = ["Your key is ", KEY[:half], KEY[half:], " and that is all. ", "Done.\n"]
    stub_llm.script = lambda _r: Reply(pieces=pieces)
    view = RecordingView()

    decision = await Pipeline().run(
        request(), policy(stub_llm, secrets()), view=view, stream=SETTINGS
    )

    assert decision.action is Action.REPLIED
    assert all(KEY[:12] not in s for s in view.states)
    assert unscreened_chars(view.states, decision.reply) == 0


async def test_a_key_whose_first_piece_ends_a_chunk_is_held_whole(stub_llm: StubOpenAI) -> None:
    # "sk-proj- Ab3d…" is one key written in two pieces; the cut after "sk-proj- " would
    # leave the rest for the next chunk, where masking it would reach into what was shown.
    rest = KEY[len("sk-proj-") :]
    view = RecordingView()
    pieces = ["Your key is sk-proj- ", f"{rest} and that is all. ", "Done.\n"]
    stub_llm.script = lambda _r: Reply(pieces=pieces, pauses={1: view.first_shown})

    # No sentence end to cut at: the cut comes when the hold expires, at the last word.
    settings = StreamSettings(chunk_chars=5, context_chars=40, max_hold_ms=20)

    decision = await Pipeline().run(
        request(), policy(stub_llm, secrets()), view=view, stream=settings
    )
    await finish(view, decision)

    assert decision.reply == "Your key is [SECRET:openai] and that is all. Done.\n"
    assert view.states[0] == "Your key is "  # shown before the rest of the key came
    assert all(rest[:8] not in state and "sk-proj" not in state for state in view.states)
    assert unscreened_chars(view.states, decision.reply) == 0 and view.retracted == []


def test_a_card_number_in_groups_is_held_back() -> None:
    chunker = Chunker(chunk_chars=5)
    chunker.feed("My card is 4111 1111 ")
    assert chunker.cut(hold_expired=True) == "My card is "
    chunker.feed("1111 1111. Thanks.")
    assert chunker.cut() == "4111 1111 1111 1111. "


async def test_a_mid_stream_block_closes_the_request_and_stops(stub_llm: StubOpenAI) -> None:
    pieces = [
        "All good here, my friends. ",
        "Now the forbidden word. ",
        "More text. ",
        "And more.\n",
    ]
    view = RecordingView()
    # The second piece comes once the first is shown; the third never does by itself,
    # so the request can only end by the client closing it.
    pauses = {1: view.first_shown, 2: asyncio.Event()}
    stub_llm.script = lambda _r: Reply(pieces=pieces, pauses=pauses)

    decision = await Pipeline().run(
        request(), policy(stub_llm, blocklist(["forbidden"])), view=view, stream=SETTINGS
    )

    generation = stub_llm.chat_requests()[0]
    await asyncio.wait_for(generation.done.wait(), 5)
    assert generation.closed_early
    assert decision.action is Action.BLOCKED and decision.blocked_by == "blocklist"
    assert decision.stream is not None and decision.stream.stopped_at_chunk == 1
    assert view.states == ["All good here, my friends. "]
    assert decision.stream.shown_chars == len("All good here, my friends. ")
    await finish(view, decision)
    assert view.retracted == [decision.reply] and decision.stream.retracted


async def test_a_final_guard_that_blocks_retracts(stub_llm: StubOpenAI) -> None:
    pieces = ["First sentence here. ", "The secret plan is ", "ready now.\n"]
    stub_llm.script = lambda _r: Reply(pieces=pieces)
    view = RecordingView()

    decision = await Pipeline().run(
        request(),
        policy(stub_llm, blocklist(["secret plan"], stream="final")),
        view=view,
        stream=SETTINGS,
    )
    await finish(view, decision)

    assert decision.action is Action.BLOCKED
    assert decision.stream is not None and decision.stream.final_guards == ["blocklist"]
    assert decision.stream.shown_chars > 0  # shown before the final verdict ...
    assert view.retracted == [decision.reply]  # ... then replaced by the refusal
    assert decision.stream.retracted


async def test_a_connection_reset_leaves_what_was_shown_with_a_note(stub_llm: StubOpenAI) -> None:
    pieces = ["One whole sentence. ", "Another one here. ", "never sent"]
    stub_llm.script = lambda _r: Reply(pieces=pieces, drop_after_chunks=2)
    view = RecordingView()

    decision = await Pipeline().run(request(), policy(stub_llm), view=view, stream=SETTINGS)
    await finish(view, decision)

    assert decision.action is Action.ERROR and decision.error
    assert "broke off" in decision.error
    shown = "One whole sentence. Another one here. "
    assert decision.reply == f"{shown}\n\n{BROKE_OFF_NOTE}"
    assert view.retracted == [decision.reply]
    assert unscreened_chars(view.states[:-1], shown) == 0


async def test_input_block_shows_nothing_and_closes_generation(stub_llm: StubOpenAI) -> None:
    stub_llm.script = lambda _r: Reply(pieces=["a. ", "b. "], pauses={1: asyncio.Event()})
    # Blocks once the stub has the generation request, so the block must close it.
    guard = EventGuard("in", stub_llm.request_seen.wait, unsafe=True)
    view = RecordingView()

    decision = await Pipeline().run(
        request("attack now"),
        policy(stub_llm, ConfiguredGuard(guard_cfg("in"), guard)),
        view=view,
        stream=SETTINGS,
    )

    assert decision.action is Action.BLOCKED and view.states == []
    generation = stub_llm.chat_requests()[0]
    await asyncio.wait_for(generation.done.wait(), 5)
    assert generation.closed_early


class WindowGuard:
    """Allows everything, recording each text it was asked to judge."""

    local = True
    offline = True

    def __init__(self) -> None:
        self.name = "windows"
        self.texts: list[str] = []

    async def check(self, text: str, context: GuardContext) -> Verdict:
        self.texts.append(text)
        return verdict(self.name, context, unsafe=False, category="test", score=0.0)


@pytest.mark.parametrize("context_chars", [0, 12])
async def test_each_chunk_is_judged_with_context_chars_of_the_text_before_it(
    stub_llm: StubOpenAI, context_chars: int
) -> None:
    pieces = ["First sentence is here. ", "Second sentence is here. ", "Third. ", "Done.\n"]
    view = RecordingView()
    # The second piece comes once the first is shown: at least two chunks, whatever the timing.
    stub_llm.script = lambda _r: Reply(pieces=pieces, pauses={1: view.first_shown})
    recorder = Recorder(view)
    guard = WindowGuard()
    settings = StreamSettings(chunk_chars=5, context_chars=context_chars, max_hold_ms=60_000)

    decision = await Pipeline().run(
        request(),
        policy(stub_llm, ConfiguredGuard(guard_cfg("windows", stage="output"), guard)),
        view=view,
        stream=settings,
        recorder=recorder,
    )

    assert decision.action is Action.REPLIED and decision.reply == "".join(pieces)
    chunks = [text for _, text, _ in recorder.chunks]
    assert len(chunks) >= 2 and chunks[0] == pieces[0]
    before = ["".join(chunks[:i]) for i in range(len(chunks))]
    # 0 is no context: each chunk alone, so screening costs the reply's length in all
    # (not the whole text shown so far with every chunk).
    windows = [context_of(b, context_chars) + c for b, c in zip(before, chunks, strict=True)]
    assert guard.texts == windows
    if context_chars == 0:
        assert guard.texts == chunks
    else:
        assert guard.texts[1] == "is here. " + chunks[1]
