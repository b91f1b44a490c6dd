"""Connections to the shared log lost and found again: the settings listener, the writer, the CLI.

An instance learns of another's settings change through LISTEN on a
connection of its own. If that connection dies (an operator's
``pg_terminate_backend``, a server restart) the instance must listen again by
itself, or it would keep its old settings for good. A server that cannot be
reached at start must be reported as one line, not a traceback. The read
pool hands a connection back as it is, with no reset round.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from bot.app import GuardBot
from bot.cli.common import EXIT_NOT_FOUND
from bot.config.schema import default_config_text, load_config
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.store import LISTENER_NAME
from middleware.types import ChatRequest
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer, free_port

Temperatures = asyncio.Queue[float]


@pytest.fixture
async def two_bots(pg_url: str) -> AsyncIterator[tuple[GuardBot, GuardBot, Temperatures]]:
    """Instances A and B on one database, and the temperature B has in force each time
    its listener hands it a change (after B's own reload, which registered first)."""
    config = load_config(None).model_copy(deep=True)
    config.log.url = pg_url
    one = await GuardBot.open(config, env={})
    two = await GuardBot.open(config, env={})
    seen: Temperatures = asyncio.Queue()
    assert isinstance(two.log, PostgresLog)
    two.log.on_settings_changed(_record_temperature(two, seen))
    try:
        yield one, two, seen
    finally:
        await one.close()
        await two.close()


def _record_temperature(bot: GuardBot, seen: Temperatures) -> Callable[[], Awaitable[None]]:
    async def callback() -> None:
        seen.put_nowait(bot.settings.effective("console", "c")[0].llm.temperature)

    return callback


async def set_temperature(bot: GuardBot, value: float) -> None:
    command = f"set temperature {value}"
    admin = ChatRequest(platform="console", channel_id="c", thread_id="t", user_id="ops",
                        text=f"/admin {command}")  # fmt: skip
    answer = await bot.admin(admin, command, platform_admin=True)
    assert answer.startswith("Set "), answer  # not "Not changed", not "cannot be written"


async def seen_within_a_second(seen: Temperatures, value: float) -> None:
    async with asyncio.timeout(1.0):
        while await seen.get() != value:
            pass


async def listening(seen: Temperatures) -> None:
    """B's listener is in place: it reloads once as soon as it starts listening."""
    async with asyncio.timeout(5.0):
        await seen.get()


async def kill_listeners(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER_NAME,
        )
    finally:
        await conn.close()
    return len(killed)


async def test_the_listener_listens_again_after_its_connection_is_killed(
    pg_url: str, two_bots: tuple[GuardBot, GuardBot, Temperatures]
) -> None:
    one, _, seen = two_bots
    await listening(seen)
    assert await kill_listeners(pg_url) == 2  # A's and B's
    await set_temperature(one, 0.3)  # its NOTIFY reaches no listener of B's
    await seen_within_a_second(seen, 0.3)  # B reloaded as soon as it listened again
    await set_temperature(one, 0.4)
    await seen_within_a_second(seen, 0.4)  # through NOTIFY on the new connection


async def test_a_callback_that_raises_does_not_end_the_listener(
    two_bots: tuple[GuardBot, GuardBot, Temperatures], caplog: pytest.LogCaptureFixture
) -> None:
    one, two, seen = two_bots
    await listening(seen)
    failed: list[None] = []

    async def fails_once() -> None:
        if not failed:
            failed.append(None)
            raise RuntimeError("a reload that fails")

    assert isinstance(two.log, PostgresLog)
    two.log.on_settings_changed(fails_once)  # after B's reload and the recorder
    await set_temperature(one, 0.3)
    await seen_within_a_second(seen, 0.3)
    await set_temperature(one, 0.4)  # the listener survived the failure: B still hears
    await seen_within_a_second(seen, 0.4)
    assert failed == [None]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "could not reload runtime settings" in errors[0].getMessage()


async def test_the_listener_and_the_writer_come_back_after_a_server_restart(
    pg_server: PostgresServer, two_bots: tuple[GuardBot, GuardBot, Temperatures]
) -> None:
    one, two, seen = two_bots
    await listening(seen)
    await asyncio.to_thread(pg_server.restart)
    await set_temperature(one, 0.6)  # A's writer lost its connection idle: no write fails
    await seen_within_a_second(seen, 0.6)
    await set_temperature(one, 0.7)
    await seen_within_a_second(seen, 0.7)
    report = await two.log.verify()
    assert report.ok, report.message


# -- PostgreSQL unreachable at start -------------------------------------------------------


def _config(folder: Path, port: int) -> Path:
    config = folder / "config.toml"
    url = f"postgresql://guardbot@127.0.0.1:{port}/guardbot"
    config.write_text(default_config_text().replace('url = ""', f'url = "{url}"'))
    return config


async def guardbot(*argv: str) -> tuple[int, str, str]:
    env = {**os.environ, "OPENAI_API_KEY": "", "SLACK_BOT_TOKEN": "xoxb-1",
           "SLACK_APP_TOKEN": "xapp-1", "PGPASSWORD": "not-shown"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli.main", *argv, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await proc.communicate(b"hello\n")
    return proc.returncode or 0, out.decode(), err.decode()


def assert_one_line(code: int, err: str, why: str) -> None:
    assert code == EXIT_NOT_FOUND, err  # "1: no log" in the documented exit status scheme
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "guardbot: cannot connect to the decision log PostgreSQL guardbot@127.0.0.1:"
    ), err
    assert lines[0].endswith(why), err
    assert "not-shown" not in err


@pytest.mark.parametrize("command", ["chat", "run"])
async def test_a_server_that_refuses_the_connection_is_one_line(
    command: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, free_port())  # nothing listens there
    code, _, err = await guardbot(command, "--config", str(config))
    assert_one_line(code, err, "(is the server running and reachable?)")


async def test_a_server_that_never_answers_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as silent:  # the kernel accepts; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config = _config(tmp_path, silent.getsockname()[1])
        code, _, err = await guardbot("run", "--config", str(config))
    assert_one_line(code, err, "no answer within 5 s (is the server reachable?)")


async def test_the_read_pool_releases_a_connection_without_a_reset(
    pg_log: PostgresLog, pg_url: str
) -> None:
    """A read's connection goes back to the pool as it is: the reads change no session
    state, and asyncpg's default reset (four statements per release) cost more than a
    history read itself. The pool's connection is still good for the next reads."""
    await pg_log.record(make_decision("hello"))
    assert len(await pg_log.query(limit=5)) == 1
    admin = await asyncpg.connect(pg_url)
    try:
        last = [
            r[0]
            for r in await admin.fetch(
                "SELECT query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    finally:
        await admin.close()
    reads = [q for q in last if q.startswith("SELECT") and "guardbot_append" not in q]
    assert reads, last  # the pool's reader, idle after its last read
    assert not any("RESET ALL" in q or "pg_advisory_unlock_all" in q for q in last), last
    for _ in range(3):
        assert len(await pg_log.query(limit=5)) == 1
