"""GuardBot.handle: every message ends in a recorded decision, even when something breaks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bot.app import EMPTY_REPLY, INTERNAL_ERROR_REPLY, GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog
from middleware.llm.model import Completion, LLMError, Message, ModelSettings
from middleware.llm.scripted import FunctionModel, Scripted, ScriptedModel
from middleware.types import Action, ChatRequest


async def make_bot(tmp_path: Path, toml: str, model: object) -> GuardBot:
    config = parse_config(toml + f'\n[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    log = await DecisionLog.open(config.log.path)
    return GuardBot(config, log, env={}, model=model)  # type: ignore[arg-type]


def req(text: str, thread: str = "t1") -> ChatRequest:
    return ChatRequest(
        platform="test", channel_id="c", thread_id=thread, user_id="u", message_id=text, text=text
    )


async def test_error_reply_template_with_braces_is_used_literally(tmp_path: Path) -> None:
    model = ScriptedModel([Scripted(error=LLMError("model server answered HTTP 500"))])
    bot = await make_bot(tmp_path, '[pipeline]\nerror_reply = "Oops :-{ ({reason})"\n', model)
    try:
        decision = await bot.handle(req("hello"))
        assert decision.action is Action.ERROR
        # The user reads a plain reason; the server's answer stays in the decision.
        assert decision.reply == "Oops :-{ (the model could not answer)"
        assert decision.error is not None and "HTTP 500" in decision.error
        stored = await bot.log.get(decision.id)
        assert stored is not None and stored.action is Action.ERROR
    finally:
        await bot.close()


async def test_a_bug_in_the_pipeline_is_a_recorded_error_not_a_crash(tmp_path: Path) -> None:
    bot = await make_bot(tmp_path, "", ScriptedModel([]))
    bot.pipeline.run = None  # type: ignore[assignment,method-assign]  # a bug inside handle
    try:
        decision = await bot.handle(req("hello"))
        assert decision.action is Action.ERROR
        assert decision.reply == INTERNAL_ERROR_REPLY
        assert decision.error == "internal error: TypeError"
        assert await bot.log.get(decision.id) is not None
    finally:
        await bot.close()


async def test_empty_message_is_answered_and_recorded(tmp_path: Path) -> None:
    bot = await make_bot(tmp_path, "", ScriptedModel([]))
    try:
        decision = await bot.handle(req("   "))
        assert decision.reply == EMPTY_REPLY
        await bot.record_delivery(decision, sent=True, error=None)
        stored = await bot.log.get(decision.id)
        assert stored is not None and stored.error == "empty message"
        assert stored.delivery.status == "sent"
    finally:
        await bot.close()


async def test_history_comes_from_the_log_and_survives_a_restart(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def reply(messages: Sequence[Message], _settings: ModelSettings) -> str:
        seen.append([m.content for m in messages if m.role != "system"])
        return f"answer {len(seen)}"

    bot = await make_bot(tmp_path, "", FunctionModel(reply))
    await bot.handle(req("first question"))
    await bot.close()
    bot = await make_bot(tmp_path, "", FunctionModel(reply))
    try:
        await bot.handle(req("second question"))
        await bot.handle(req("other thread", thread="t2"))
    finally:
        await bot.close()
    assert seen[1] == ["first question", "answer 1", "second question"]
    assert seen[2] == ["other thread"]


class HugeUsage(FunctionModel):
    """A model whose usage no log column can hold (the OpenAI client clamps what a
    server says; this stands for any value a bug lets through to the log)."""

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        done = await super().complete(messages, settings=settings)
        return replace(done, tokens_in=10**19)


async def test_a_decision_the_log_cannot_store_is_recorded_as_an_internal_error(
    tmp_path: Path,
) -> None:
    bot = await make_bot(tmp_path, "", HugeUsage(lambda _m, _s: "hi there"))
    try:
        decision = await bot.handle(req("hello"))
        assert (decision.action, decision.reply) == (Action.ERROR, INTERNAL_ERROR_REPLY)
        assert decision.error == "internal error: ValueError"
        stored = await bot.log.get(decision.id)
        assert stored is not None and stored.request.text == "hello"
        assert stored.reply == INTERNAL_ERROR_REPLY  # not the reply that could not be stored
    finally:
        await bot.close()


async def test_a_bot_without_guards_says_so_at_start(tmp_path: Path) -> None:
    for toml, unguarded in (("", True), ('[[guards]]\nname = "pii"\nkind = "pii"\n', False)):
        bot = await make_bot(tmp_path, toml, ScriptedModel([]))
        try:
            assert ("no guards configured" in (bot.notice() or "")) is unguarded
        finally:
            await bot.close()
