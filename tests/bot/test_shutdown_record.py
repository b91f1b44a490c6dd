"""Edges of one message: cut off at shutdown, or holding a lone surrogate.

A message cancelled anywhere in the bot (shutdown_timeout_s ran out: while the
settings load, the pipeline runs, or its decision waits to be written) must still
leave exactly one decision on record (one cut off mid-stream also what the user was
shown, and how the view was left); the default timeout must fit in `docker stop`'s
10 s grace; a lone surrogate must never be reported as a malformed model
response (the request was never sent) nor crash the bot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.discord.config import DiscordConfig
from adapters.live import CUT_OFF_NOTE
from adapters.slack.config import SlackConfig
from bot import app
from bot.app import SHUTDOWN_ERROR, GuardBot
from bot.cli.main import main
from bot.config.runtime import RuntimeSettings
from bot.config.schema import Config, default_config_text, parse_config
from middleware.decision_log import DecisionLog
from middleware.decision_log.chain import ChainReport
from middleware.decision_log.records import EncodedDecision
from middleware.decision_log.rows import StoredDecision
from middleware.decision_log.writes import Op
from middleware.errors import LLMError
from middleware.llm.model import Message, ModelSettings
from middleware.llm.openai_model import OpenAIChatModel, build_client
from middleware.llm.scripted import FunctionModel
from middleware.types import Action, ChatRequest, Decision, StreamRecord
from tests.middleware.test_decision_log_writer import holding, writer_of
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.stream_support import (
    PIECES,
    STREAM_TOML,
    RecordingView,
    audit_config,
    console_request,
)

REPO = Path(__file__).resolve().parents[2]
DOCKER_STOP_GRACE_S = 10


def request(text: str) -> ChatRequest:
    return ChatRequest(
        platform="slack", channel_id="C1", thread_id="t", user_id="U1", message_id="m1", text=text
    )


async def test_a_message_cut_off_at_shutdown_is_recorded(tmp_path: Path) -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def slow(_messages: Sequence[Message], _settings: ModelSettings) -> str:
        started.set()
        await never.wait()  # the reply is never ready: shutdown cuts it off
        return "too late"

    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    log = await DecisionLog.open(config.log.path)
    bot = GuardBot(config, log, env={}, model=FunctionModel(slow))
    try:
        task = asyncio.create_task(bot.handle(request("hello")))
        await started.wait()
        task.cancel()  # what SlackListeners.drain / DiscordService.stop do after the timeout
        with pytest.raises(asyncio.CancelledError):
            await task  # the cancellation is not swallowed
        [decision] = await bot.log.query(limit=5)
        assert decision.action is Action.ERROR
        assert decision.error == SHUTDOWN_ERROR and decision.error.startswith("shutdown")
        assert decision.request.text == "hello" and decision.reply == ""
        stored = await bot.log.get_stored(decision.id)
        assert stored is not None
        assert [(d.status, d.error) for d in stored.deliveries] == [("none", "cut off at shutdown")]
        assert (await bot.log.verify()).ok
    finally:
        await bot.close()


class StuckView(RecordingView):
    """A view whose retraction never returns (a platform that hangs at shutdown)."""

    async def retract(self, text: str) -> None:
        self.retracted.append(text)
        await asyncio.Event().wait()


async def cut_off_mid_stream(
    tmp_path: Path, stub_llm: StubOpenAI, view: RecordingView
) -> tuple[Decision, StoredDecision, StreamRecord | None, ChainReport]:
    """Stream a reply into ``view``, cancel it (shutdown) once its first chunk is shown,
    and read back what the log then holds."""
    never = asyncio.Event()  # the rest of the reply never comes: shutdown cuts it off

    def script(_rec: Recorded) -> Reply:
        return Reply(pieces=["Hello there, friend. ", "The rest never comes."], pauses={1: never})

    stub_llm.script = script
    db = tmp_path / "g.db"
    config = parse_config(STREAM_TOML + f'[log]\npath = "{db}"\n', "test")
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    bot = GuardBot(config, await DecisionLog.open(db), env={}, model=model)
    try:
        task = asyncio.create_task(bot.handle(request("hello"), view))
        await view.first_shown.wait()  # the first chunk is on record, and on screen
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # the cancellation is not swallowed
        [decision] = await bot.log.query(limit=5)
        stored = await bot.log.get_stored(decision.id)
        stream = await bot.log.stream_of(decision.id)
        report = await bot.log.verify()
    finally:
        await bot.close()
        await model.close()
    assert stored is not None
    return decision, stored, stream, report


async def test_a_reply_cut_off_mid_stream_is_recorded_as_the_user_saw_it(
    tmp_path: Path, stub_llm: StubOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    view = RecordingView()
    decision, stored, stream, report = await cut_off_mid_stream(tmp_path, stub_llm, view)
    shown = "Hello there, friend. "
    # What was shown stays (screened, on record), followed by the note; the decision's
    # reply is what the view was left on, recorded before the view was given it.
    assert view.states == [shown, f"{shown}\n\n{CUT_OFF_NOTE}"]
    assert (decision.action, decision.error) == (Action.ERROR, SHUTDOWN_ERROR)
    assert decision.reply == view.states[-1]
    # The chunk shown was recorded under the id the cut-off decision now carries, and the
    # stream's end row (not a rebuild from its chunks) says what was shown and how it ended.
    assert stream is not None and [(c.index, c.released) for c in stream.chunks] == [(0, True)]
    assert (stream.shown_chars, stream.retracted, stream.updates) == (len(shown), False, 2)
    assert stream.chunk_chars == 10 and stream.first_visible_ms is not None
    assert stream.note == (
        f"cut off at shutdown after {len(shown)} characters in 1 chunk(s) were shown; "
        "left on screen; the view was given a cut-off note after it"
    )
    [delivery] = stored.deliveries
    assert delivery.status == "failed" and delivery.error == stream.note
    assert report.ok, report
    db = str(tmp_path / "g.db")
    assert await asyncio.to_thread(main, ["show", "--db", db, decision.id]) == 0
    out = capsys.readouterr().out
    assert decision.id in out and SHUTDOWN_ERROR in out
    assert f"{len(shown)} chars shown, not retracted" in out
    assert "left on screen; the view was given a cut-off note after it" in out
    assert "delivery" in out and "failed" in out
    assert await asyncio.to_thread(main, ["verify", "--db", db]) == 0


async def test_a_cut_off_reply_the_view_cannot_end_in_time_is_recorded_as_left(
    tmp_path: Path, stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "SHUTDOWN_RECORD_S", 0.2)  # the view hangs: it gets half
    view = StuckView()
    decision, stored, stream, report = await cut_off_mid_stream(tmp_path, stub_llm, view)
    shown = "Hello there, friend. "
    assert view.states == [shown] and view.retracted == [f"{shown}\n\n{CUT_OFF_NOTE}"]
    left = "left as shown: the view could not be updated within 0.1 s"
    assert stream is not None and stream.delivery_errors == [left]
    assert (stream.shown_chars, stream.retracted, stream.updates) == (len(shown), False, 1)
    assert stream.note is not None and stream.note.endswith(f"were shown; {left}")
    assert [(d.status, d.error) for d in stored.deliveries] == [("failed", stream.note)]
    assert report.ok, report


class HeldSettings(RuntimeSettings):
    """Settings whose first load waits until released (it never is, here)."""

    def __init__(self, base: Config, log: DecisionLog) -> None:
        super().__init__(base, log)
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def load(self) -> None:
        self.entered.set()
        await self.release.wait()
        await super().load()


async def test_a_message_cut_off_while_the_settings_load_is_recorded(tmp_path: Path) -> None:
    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    log = await DecisionLog.open(config.log.path)
    bot = GuardBot(config, log, env={}, model=FunctionModel(lambda _m, _s: "hi"))
    bot.settings = held = HeldSettings(config, log)
    try:
        task = asyncio.create_task(bot.handle(request("hello")))
        await held.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [decision] = await log.query(limit=5)
        stored = await log.get_stored(decision.id)
        assert (await log.verify()).ok
    finally:
        await bot.close()
    assert (decision.action, decision.error, decision.request.text) == (
        Action.ERROR,
        SHUTDOWN_ERROR,
        "hello",
    )
    assert stored is not None and [d.status for d in stored.deliveries] == ["none"]


async def queued_decision(log: DecisionLog) -> str:
    """The id of the decision the bot queued behind the held transaction, once it is."""
    writer = writer_of(log)
    loop = asyncio.get_running_loop()
    # Yields to the bot's task until it queues; bounded by time, not by a count of
    # yields: a streamed reply first waits on the stub's pieces, which a loaded machine
    # (CI) may deliver after any fixed number of turns of the loop.
    deadline = loop.time() + 30
    while loop.time() < deadline:
        jobs = [job for job, _ in writer._queue if isinstance(job, EncodedDecision)]
        if jobs:
            return str(jobs[0].row["id"])
        await asyncio.sleep(0)
    raise AssertionError("the bot never queued its decision")


async def cut_off_queued(
    log: DecisionLog, task: asyncio.Task[Decision], release: threading.Event, *, writer_stops: bool
) -> str:
    """Cancel ``task`` (shutdown) once its decision is queued behind a held writer, then
    release the writer; ``writer_stops``: the writer stops before the decision began, so
    it never commits (the cut-off takes its place, same id). The decision's id."""
    queued = await queued_decision(log)
    task.cancel()
    if writer_stops:
        stopped = writer_of(log)._task
        assert stopped is not None
        stopped.cancel()
        await asyncio.wait([stopped])
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task  # the cancellation is not swallowed
    return queued


@pytest.mark.parametrize("writer_stops", [False, True])
async def test_a_message_cut_off_while_its_decision_is_queued_is_recorded_once(
    tmp_path: Path, writer_stops: bool
) -> None:
    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    log = await DecisionLog.open(config.log.path)
    bot = GuardBot(config, log, env={}, model=FunctionModel(lambda _m, _s: "hi there"))
    await bot.settings.load()
    op, inside, release = holding(asyncio.get_running_loop())
    holder = asyncio.create_task(writer_of(log).submit(op))
    try:
        await inside.wait()  # a transaction holds the writer: the bot's decision queues
        task = asyncio.create_task(bot.handle(request("hello")))
        queued = await cut_off_queued(log, task, release, writer_stops=writer_stops)
        await holder
        decisions = await log.query(limit=5)
        stored = await log.get_stored(queued)
        report = await log.verify()
    finally:
        release.set()
        await bot.close()
    assert [d.id for d in decisions] == [queued]  # once, whichever way
    expected = (Action.ERROR, SHUTDOWN_ERROR) if writer_stops else (Action.REPLIED, None)
    assert (decisions[0].action, decisions[0].error) == expected
    assert stored is not None and [d.status for d in stored.deliveries] == ["none"]
    assert report.ok, report


class HoldingLog(DecisionLog):
    """A real log whose writer is held (a transaction kept open) as a decision comes to be
    recorded, so the bot's record queues behind it: chunks before it went through."""

    hold: tuple[Op, asyncio.Event, threading.Event] | None = None
    holder: asyncio.Task[object] | None = None

    async def record(self, decision: Decision) -> None:
        if self.hold is not None and self.holder is None:
            op, inside, _ = self.hold
            self.holder = asyncio.create_task(writer_of(self).submit(op))
            await inside.wait()
        await super().record(decision)


@pytest.mark.parametrize("writer_stops", [False, True])
async def test_a_blocked_stream_cut_off_while_its_decision_is_queued_is_still_retracted(
    tmp_path: Path, stub_llm: StubOpenAI, writer_stops: bool
) -> None:
    # The `final` guard blocks the whole reply after its first part was shown; shutdown
    # comes while that decision waits for the writer. What was shown must still go.
    view = RecordingView()
    stub_llm.script = lambda _r: Reply(pieces=PIECES["final"], pauses={1: view.first_shown})
    db = tmp_path / "g.db"
    log = await HoldingLog.open(db)
    assert isinstance(log, HoldingLog)
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    bot = GuardBot(audit_config(db), log, env={}, model=model)
    log.hold = (op, _, release) = holding(asyncio.get_running_loop())
    try:
        task = asyncio.create_task(bot.handle(console_request("final please"), view))
        queued = await cut_off_queued(log, task, release, writer_stops=writer_stops)
        decisions = await log.query(limit=5)
        stored = await log.get_stored(queued)
        stream = await log.stream_of(queued)
        report = await log.verify()
    finally:
        release.set()
        await bot.close()
        await model.close()
    assert [d.id for d in decisions] == [queued] and stored is not None and stream is not None
    shown = view.states[0]
    assert shown.startswith("Plain first part.") and stream.shown_chars >= len(shown)
    [delivery] = stored.deliveries
    assert delivery.status == "failed" and delivery.error == stream.note
    error = delivery.error or ""
    assert report.ok, report
    if writer_stops:  # recorded as cut off mid-stream: the text shown and the note stay
        assert decisions[0].action is Action.ERROR
        assert view.retracted == [f"{view.states[-2]}\n\n{CUT_OFF_NOTE}"]
        assert "were shown; left on screen" in error
    else:  # its decision is on record: the view still ends on it, retracting what was shown
        assert decisions[0].action is Action.BLOCKED and decisions[0].blocked_by == "late"
        assert view.retracted == [decisions[0].reply] and stream.retracted
        assert error.endswith("then replaced by the decision's final message")


def test_default_shutdown_timeout_fits_in_docker_stop_grace() -> None:
    # `guardbot run` stops Slack, then Discord: both drains together fit in the grace.
    shipped = parse_config(default_config_text(), "default")
    total = shipped.slack.shutdown_timeout_s + shipped.discord.shutdown_timeout_s
    assert SlackConfig().shutdown_timeout_s == shipped.slack.shutdown_timeout_s
    assert DiscordConfig().shutdown_timeout_s == shipped.discord.shutdown_timeout_s
    assert total < DOCKER_STOP_GRACE_S
    assert (REPO / "config.toml").read_bytes() == default_config_text().encode()


async def test_a_lone_surrogate_is_not_called_a_malformed_response(stub_llm: StubOpenAI) -> None:
    client = build_client(api_key="k", base_url=stub_llm.base_url, max_retries=0)
    model = OpenAIChatModel(model="m", api_key=None, client=client)
    try:
        with pytest.raises(LLMError) as caught:
            await model.complete([Message("user", "hi \ud800 there")], settings=ModelSettings())
    finally:
        await client.close()
    assert "malformed" not in str(caught.value)
    assert "not sent" in str(caught.value) and "surrogate" in str(caught.value)
    assert stub_llm.chat_requests() == []  # nothing went out


async def test_the_bot_answers_a_lone_surrogate_through_the_real_client(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    stub_llm.script = lambda rec: Reply(text=f"you said: {rec.body['messages'][-1]['content']}")
    config = parse_config(
        f'[llm]\nbase_url = "{stub_llm.base_url}"\nmax_retries = 0\n'
        f'[log]\npath = "{tmp_path / "g.db"}"\n',
        "test",
    )
    bot = await GuardBot.open(config, env={"OPENAI_API_KEY": "sk-test-key-for-the-stub-0001"})
    try:
        decision = await bot.handle(request("hi \ud800 there"))
    finally:
        await bot.close()
    # Lone surrogates become U+FFFD at the door: guards, model and log see the same text.
    assert decision.action is Action.REPLIED, decision.error
    assert decision.reply == "you said: hi \ufffd there"
    assert stub_llm.chat_requests()[-1].body["messages"][-1]["content"] == "hi \ufffd there"


async def test_hostile_names_and_ids_are_stored_not_refused(tmp_path: Path) -> None:
    # A display name or id from a platform may hold lone surrogates or NUL, which no
    # backend can store: the message is still answered, and recorded (also when cut off).
    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    bot = await GuardBot.open(config, env={})
    hostile = ChatRequest(
        platform="discord",
        channel_id="C\x00",
        thread_id="t\udcff",
        user_id="U\x001",
        user_name="Eve \ud800\x00",
        message_id="m\udc80",
        text="hello",
    )
    try:
        decision = await bot.handle(hostile)
        await bot.record_cut_off(hostile.model_copy(update={"text": "second"}), SHUTDOWN_ERROR)
        stored = await bot.log.query(limit=5)
        assert (await bot.log.verify()).ok
    finally:
        await bot.close()
    assert decision.action is Action.REPLIED, decision.error
    assert {d.request.user_name for d in stored} == {"Eve \ufffd\ufffd"}
    assert {(d.request.user_id, d.request.message_id) for d in stored} == {("U\ufffd1", "m\ufffd")}
    assert sorted(d.action.value for d in stored) == ["error", "replied"]
