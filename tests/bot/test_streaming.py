"""GuardBot.handle with a view: each chunk is on record (a real SQLite file) before it
is shown, the view ends on the decision's message, and the stream's end is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from bot.app import GuardBot
from bot.config.schema import parse_config
from bot.replay.rerun import Replayer
from bot.replay.select import Logged
from middleware.decision_log import DecisionLog
from middleware.llm.model import ChatModel
from middleware.llm.openai_model import OpenAIChatModel
from middleware.llm.scripted import Scripted, ScriptedModel
from middleware.types import Action, ChatRequest
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.stream_support import STREAM_TOML


class AuditingView:
    """Records every visible state and how many chunk rows were committed at that moment."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.states: list[tuple[str, int]] = []
        self.retracted: list[str] = []
        self.first_shown = asyncio.Event()

    async def _committed(self) -> int:
        async with aiosqlite.connect(self.db_path) as db:
            rows = await db.execute_fetchall(
                "SELECT count(*) FROM stream_events WHERE kind='chunk'"
            )
            return int(list(rows)[0][0])

    async def show(self, text: str) -> None:
        self.states.append((text, await self._committed()))
        self.first_shown.set()

    async def retract(self, text: str) -> None:
        self.retracted.append(text)
        self.states.append((text, await self._committed()))


async def make_bot(tmp_path: Path, model: ChatModel, extra: str = "") -> GuardBot:
    toml = STREAM_TOML + extra + f'\n[log]\npath = "{tmp_path / "g.db"}"\n'
    config = parse_config(toml, "test")
    log = await DecisionLog.open(config.log.path)
    return GuardBot(config, log, env={}, model=model)


def req(text: str = "hi") -> ChatRequest:
    return ChatRequest(platform="test", channel_id="c", user_id="u", message_id="m", text=text)


async def test_each_chunk_is_committed_before_it_is_shown(tmp_path: Path) -> None:
    pieces = ("Hello world. ", "Mail me at a.b@", "example.org please. ", "Bye.\n")
    bot = await make_bot(tmp_path, ScriptedModel([Scripted(pieces=pieces)]))
    view = AuditingView(tmp_path / "g.db")
    try:
        decision = await bot.handle(req(), view)
        assert decision.action is Action.REPLIED
        assert decision.reply == "Hello world. Mail me at [EMAIL] please. Bye.\n"
        # Every shown state had its chunk on record first (chunk n -> n rows).
        assert [n for _, n in view.states] == list(range(1, len(view.states) + 1))
        assert all("a.b@" not in text for text, _ in view.states)
        assert all(decision.reply.startswith(text) for text, _ in view.states)
        stream = await bot.log.stream_of(decision.id)
        assert stream is not None and stream.shown_chars == len(decision.reply)
        assert stream.first_visible_ms is not None and stream.updates == len(view.states)
        assert [c.index for c in stream.chunks] == list(range(len(stream.chunks)))
        stored = await bot.log.get(decision.id)
        assert stored is not None and stored.reply == decision.reply
    finally:
        await bot.close()


async def test_a_block_mid_stream_is_recorded_with_its_chunk(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    view = AuditingView(tmp_path / "g.db")
    pieces = ["A fine start here. ", "Then a forbidden word. ", "And more.\n"]
    # The second piece is sent once the first is shown: a block after text was shown.
    stub_llm.script = lambda _r: Reply(pieces=pieces, pauses={1: view.first_shown})
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    bot = await make_bot(tmp_path, model)
    try:
        decision = await bot.handle(req(), view)
        assert decision.action is Action.BLOCKED and decision.blocked_by == "words"
        assert view.retracted == [decision.reply]
        stream = await bot.log.stream_of(decision.id)
        assert stream is not None and stream.retracted
        assert stream.stopped_at_chunk is not None
        assert stream.chunks[stream.stopped_at_chunk].released is False
        assert stream.shown_chars == sum(c.chars for c in stream.chunks)
    finally:
        await bot.close()
        await model.close()


async def test_stream_off_for_the_channel_shows_the_whole_reply(tmp_path: Path) -> None:
    model = ScriptedModel([Scripted(text="One whole reply. Shown at once.")])
    bot = await make_bot(tmp_path, model, "")
    bot.config.pipeline.stream = False
    bot.settings = type(bot.settings)(bot.config, bot.log)
    view = AuditingView(tmp_path / "g.db")
    try:
        decision = await bot.handle(req(), view)
        assert view.states == [(decision.reply, 0)]
        assert decision.stream is None
    finally:
        await bot.close()


async def test_replay_rescreens_a_streamed_reply_chunk_by_chunk(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    view = AuditingView(tmp_path / "g.db")
    pieces = ["Hello world. ", "The word banana here. ", "Goodbye now.\n"]
    stub_llm.script = lambda _r: Reply(pieces=pieces, pauses={1: view.first_shown})
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    bot = await make_bot(tmp_path, model)
    try:
        decision = await bot.handle(req(), view)
        assert decision.action is Action.REPLIED
        logged = await bot.log.get(decision.id)
        assert logged is not None
        chunks = (await bot.log.stream_of(decision.id)).chunks  # type: ignore[union-attr]
        banana_chunk = next(c.index for c in chunks if c.shown_chars > len("Hello world. "))
        assert banana_chunk == 1  # the first chunk was shown before "banana" was generated
    finally:
        await bot.close()
        await model.close()
    # The same log under a policy that blocks "banana": the stream would stop earlier.
    stricter = STREAM_TOML.replace('words = ["forbidden"]', 'words = ["forbidden", "banana"]')
    config = parse_config(stricter + f'\n[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    host = GuardBot(
        config, await DecisionLog.open(config.log.path), env={}, model=ScriptedModel([])
    )
    try:
        result = await Replayer(host).replay(Logged(logged, text_stored=True))
    finally:
        await host.close()
    assert result.old_action == "replied" and result.new_action == "blocked"
    assert result.new_blocked_by == "words"
    assert result.note is not None and f"stop at chunk {banana_chunk}" in result.note
