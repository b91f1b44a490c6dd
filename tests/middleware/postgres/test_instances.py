"""Several bot instances (separate processes) sharing one PostgreSQL log, and the CLI on it.

Each instance is ``guardbot chat`` in its own process with ``[log] url`` set:
real pipelines, real writers, one database. The tests check what only a
shared log can break: one chain however many writers, a setting changed by
one instance applied by another, a thread continued on another instance, the
same Slack event claimed once, and the database restarted mid-run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from bot.app import GuardBot
from bot.cli.main import main
from bot.config.schema import default_config_text, load_config
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.url import PgTarget
from middleware.types import ChatRequest
from tests.support.postgres_server import PostgresServer

MESSAGES = 15


def write_config(folder: Path, url: str) -> Path:
    config = folder / "config.toml"
    text = default_config_text().replace('url = ""', f'url = "{url}"')
    config.write_text(text)
    return config


async def chat(config: Path, lines: list[str]) -> tuple[int, str, str]:
    """``guardbot chat`` in a process of its own, fed ``lines`` through a pipe."""
    env = {**os.environ, "OPENAI_API_KEY": "", "GUARDBOT_CONFIG": str(config)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli.main", "chat", "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await proc.communicate("\n".join(lines).encode() + b"\n")
    return proc.returncode or 0, out.decode(), err.decode()


async def test_three_instances_write_one_chain_that_verifies(
    pg_url: str, tmp_path: Path, capsys: object
) -> None:
    config = write_config(tmp_path, pg_url)
    runs = await asyncio.gather(
        *(chat(config, [f"instance {n} message {i}" for i in range(MESSAGES)]) for n in range(3))
    )
    for code, _, err in runs:
        assert code == 0, err
    log = await PostgresLog.open_url(PgTarget(pg_url), read_only=True)
    try:
        report = await log.verify()
        decisions = await log.query(limit=1000)
    finally:
        await log.close()
    assert report.ok, report.message
    assert len(decisions) == 3 * MESSAGES
    assert {d.request.text for d in decisions} == {
        f"instance {n} message {i}" for n in range(3) for i in range(MESSAGES)
    }


async def test_a_setting_changed_on_one_instance_applies_on_another(pg_url: str) -> None:
    config = load_config(None).model_copy(deep=True)
    config.log.url = pg_url
    one, two = await GuardBot.open(config, env={}), await GuardBot.open(config, env={})
    try:
        applied = asyncio.Event()
        assert isinstance(two.log, PostgresLog)
        two.log.on_settings_changed(_when_temperature(two, 0.2, applied))  # after B's reload
        admin = ChatRequest(platform="console", channel_id="c", thread_id="t", user_id="ops",
                            text="/admin set temperature 0.2")  # fmt: skip
        answer = await one.admin(admin, "set temperature 0.2", platform_admin=True)
        assert "Not changed" not in answer, answer
        async with asyncio.timeout(1.0):  # "within a second"
            await applied.wait()
    finally:
        await one.close()
        await two.close()


def _when_temperature(bot: GuardBot, value: float, event: asyncio.Event):  # type: ignore[no-untyped-def]
    async def callback() -> None:
        if bot.settings.effective("console", "c")[0].llm.temperature == value:
            event.set()

    return callback


async def test_a_thread_continues_on_another_instance_and_events_are_claimed_once(
    pg_url: str,
) -> None:
    config = load_config(None).model_copy(deep=True)
    config.log.url = pg_url
    one, two = await GuardBot.open(config, env={}), await GuardBot.open(config, env={})
    try:
        first = ChatRequest(platform="slack", channel_id="C1", thread_id="T1", user_id="U1",
                            text="my name is Ada")  # fmt: skip
        await one.handle(first)
        follow = first.model_copy(update={"text": "what is my name?", "message_id": "2"})
        decision = await two.handle(follow)
        assert decision.request.history and decision.request.history[0].content == "my name is Ada"
        claims = await asyncio.gather(
            one.log.claim_event("slack", "Ev1"), two.log.claim_event("slack", "Ev1")
        )
        assert sorted(claims) == [False, True]
    finally:
        await one.close()
        await two.close()


async def test_the_database_restarted_mid_run(pg_server: PostgresServer, pg_url: str) -> None:
    config = load_config(None).model_copy(deep=True)
    config.log.url = pg_url
    bot = await GuardBot.open(config, env={})
    try:
        request = ChatRequest(platform="console", channel_id="c", thread_id="t", user_id="u",
                              text="before")  # fmt: skip
        assert (await bot.handle(request)).action == "replied"
        await asyncio.to_thread(pg_server.stop)
        down = await bot.handle(request.model_copy(update={"text": "while down"}))
        assert down.action == "error" and "unavailable" in (down.error or "")
        await asyncio.to_thread(pg_server.start)
        back = await bot.handle(request.model_copy(update={"text": "after"}))
        assert back.action == "replied", back.error
        report = await bot.log.verify()
        texts = [d.request.text for d in await bot.log.query()]
    finally:
        await bot.close()
    assert report.ok and texts == ["after", "before"]


def test_audit_commands_read_the_shared_log(pg_url: str, capsys: object) -> None:
    asyncio.run(_two_messages(pg_url))
    for argv in (["logs", "--json"], ["stats", "--json"], ["verify"], ["settings", "--json"]):
        assert main([*argv, "--db", pg_url]) == 0, argv
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "hello" in out


async def _two_messages(url: str) -> None:
    config = load_config(None).model_copy(deep=True)
    config.log.url = url
    bot = await GuardBot.open(config, env={})
    try:
        for text in ("hello", "again"):
            await bot.handle(ChatRequest(platform="console", channel_id="c", thread_id="t",
                                         user_id="u", text=text))  # fmt: skip
    finally:
        await bot.close()
