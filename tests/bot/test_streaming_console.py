"""The console's streamed reply: chunks print as released, a retraction says so,
and `guardbot chat` through a pipe prints the offline echo's streamed reply whole."""

from __future__ import annotations

import io
from pathlib import Path

from adapters.console.chat import ConsoleChat
from adapters.console.stream import RETRACTED, ConsoleReplyView
from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog


async def test_chunks_print_as_they_come_and_a_retraction_is_announced() -> None:
    out = io.StringIO()
    view = ConsoleReplyView(out, prefix="bot> ", margin="     ")
    view.may_print.set()
    await view.show("First part. ")
    assert out.getvalue() == "bot> First part. "
    await view.show("First part. Second\npart.")
    assert out.getvalue() == "bot> First part. Second\n     part."
    await view.retract("Sorry, I can't help with that.")
    view.close()
    assert out.getvalue().endswith(f"\n{RETRACTED}\nbot> Sorry, I can't help with that.\n")


async def test_chat_through_a_pipe_streams_the_echo(tmp_path: Path) -> None:
    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    bot = GuardBot(config, await DecisionLog.open(config.log.path), env={})
    stdin = io.BytesIO(b"hello there, streaming world\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        code = await ConsoleChat(bot, stdin=stdin, stdout=stdout, stderr=stderr).run()
        assert code == 0
        assert stdout.getvalue() == "(echo) hello there, streaming world\n"
        (decision,) = await bot.log.query(limit=5)
        stream = await bot.log.stream_of(decision.id)
        assert stream is not None and stream.shown_chars == len(decision.reply)
    finally:
        await bot.close()
