"""The audit commands at 80 and 120 columns, short ids as git shows them, one exit-code scheme.

Layouts are checked at the widths a terminal reports (``COLUMNS``): nothing
essential may be cut to nothing, no line may overflow, and message text is
shown inert (no escape sequence reaches the terminal).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.cli.main import main
from bot.config.schema import load_config
from middleware.decision_log import DecisionLog
from middleware.types import Action, ChatRequest
from tests.support.terminal_support import INSULT, LONG, Logged, make_log, run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Logged:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GUARDBOT_CONFIG", raising=False)
    return asyncio.run(make_log(tmp_path))


def short_ids(db: Path, ids: list[str]) -> dict[str, str]:
    async def read() -> dict[str, str]:
        log = await DecisionLog.open(db, read_only=True)
        try:
            return await log.short_ids(ids)
        finally:
            await log.close()

    return asyncio.run(read())


def test_logs_at_80_columns_shows_where_user_guard_message_and_reply(
    logged: Logged, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "logs", "--db", str(logged.db))
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    blocked = next(i for i, line in enumerate(lines) if " blocked " in line)
    head, body = lines[blocked], lines[blocked + 1]
    for part in ("profanity", "ann", "console:co"):  # the place is cut first, never to nothing
        assert part in head, head
    assert INSULT in body and "Sorry, I can't help with that." in body
    long_line = next(line for line in lines if LONG[:30] in line)
    assert "→ (echo) what is" in long_line  # the reply keeps its share of the line
    assert "\x1b" not in out and "red alert" in out  # escapes replaced, the text kept


def test_logs_at_120_columns_is_a_table_with_every_column(
    logged: Logged, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "logs", "--db", str(logged.db))
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 120 for line in lines), out
    assert re.split(r"\s+", lines[0].strip()) == [
        "time", "(UTC)", "id", "where", "user", "action", "guard", "message", "reply", "ms",
    ]  # fmt: skip
    short = short_ids(logged.db, [d.id for d in logged.decisions])
    row = next(line for line in lines if short[logged.decisions[3].id] + " " in line)
    for part in ("console:console", "ann", "blocked", "profanity", INSULT, "Sorry, I can't"):
        assert part in row, row
    assert "\x1b" not in out


def test_short_ids_are_the_shortest_unique_prefix_of_at_least_7(logged: Logged) -> None:
    ids = [d.id for d in logged.decisions]
    short = short_ids(logged.db, ids)
    for full, prefix in short.items():
        assert full.startswith(prefix) and len(prefix) >= 7
        assert [i for i in ids if i.startswith(prefix)] == [full]
        if len(prefix) > 7:  # one character less is ambiguous: as short as it can be
            assert len([i for i in ids if i.startswith(prefix[:-1])]) > 1


def test_show_and_replay_take_a_short_id_and_an_ambiguous_one_lists_the_candidates(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    target = logged.decisions[3]
    short = short_ids(logged.db, [target.id])[target.id]
    code, out, _ = run(capsys, "show", "--db", str(logged.db), short)
    assert code == 0 and target.id in out
    code, out, err = run(capsys, "replay", "--db", str(logged.db), "--ids", short, "--json")
    assert code == 0, err
    assert '"selected": 1' in out
    prefix = logged.decisions[0].id[:7]  # made in the same second: shared by all six
    code, _, err = run(capsys, "show", "--db", str(logged.db), prefix)
    assert code == 2
    listed = short_ids(logged.db, [d.id for d in logged.decisions])
    assert "matches more than one decision" in err
    assert all(s in err for s in listed.values()), err


def test_admin_why_takes_a_short_id(logged: Logged) -> None:
    async def ask() -> str:
        log = await DecisionLog.open(logged.db)
        bot = GuardBot(load_config(logged.config), log, env={})
        try:
            target = logged.decisions[3].id
            short = (await log.short_ids([target]))[target]
            # console:* is an admin in the default config (the terminal's own user)
            request = ChatRequest(platform="console", channel_id="console", user_id="u1", text="")
            return await bot.admin(request, f"why {short}")
        finally:
            await bot.close()

    answer = asyncio.run(ask())
    assert logged.decisions[3].id in answer and "profanity" in answer


@pytest.mark.parametrize(
    "argv",
    [["logs"], ["show", "0123456789"], ["replay"], ["stats"], ["replay", "--ids", "0123456789"]],
)
def test_not_found_is_exit_1_everywhere(
    logged: Logged, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    db = logged.db if "0123456789" in argv else logged.folder / "missing.db"
    code, _, err = run(capsys, argv[0], "--db", str(db), *argv[1:])
    assert code == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["logs", "show", "replay", "screen"])
def test_the_exit_codes_are_documented_in_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 ok; 1 not found" in text and "2 usage or configuration error" in text


def test_settings_at_80_columns_does_not_cut_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    logged = asyncio.run(make_log(tmp_path, override=True))
    code, out, _ = run(capsys, "--config", str(logged.config), "settings")
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in out  # folded onto a second line, never clipped
    key = "".join(m for m in re.findall(r"^│[^│]*│ (\S*)\s*│", out, re.M))  # the key column
    assert "guard.profanity.enabled" in key


def test_decision_actions_as_expected(logged: Logged) -> None:
    """The fixture itself: without an override the insults are blocked."""
    assert [d.action for d in logged.decisions][-3:] == [Action.BLOCKED] * 3


def test_logs_in_a_real_80_column_terminal_uses_its_width(logged: Logged) -> None:
    """No COLUMNS: the width comes from the pseudo-terminal, as in tmux."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "bot.cli.main", "logs", "--db", str(logged.db)]
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, env=env, cwd=logged.folder)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # rich's own colours
    lines = text.replace("\r", "").splitlines()
    assert all(len(line) <= 80 for line in lines), text
    blocked = next(i for i, line in enumerate(lines) if " blocked " in line)
    head, body = lines[blocked], lines[blocked + 1]  # the two-line form, not a wide table
    assert "profanity" in head and INSULT not in head and body.startswith(f"  {INSULT} → ")
