"""`guardbot settings` and `guardbot settings history` on a log changed from chat.

The changes are made the way admins make them (through `GuardBot.admin`),
then read from the shell through the real CLI entry, `bot.cli.main.main`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.cli.main import main
from bot.config.schema import load_config
from middleware.types import ChatRequest

CONFIG = """
[llm]
provider = "echo"

[log]
path = "{db}"

[[guards]]
name = "length"
kind = "max_length"
max_chars = 30

[[guards]]
name = "old"
kind = "max_length"

[admin]
users = ["slack:UADMIN"]
"""


def write_config(tmp_path: Path, *, with_old_guard: bool = True) -> Path:
    text = CONFIG.format(db=tmp_path / "guardbot.db")
    if not with_old_guard:
        text = text.replace('[[guards]]\nname = "old"\nkind = "max_length"\n', "")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


async def chat_admin(config_path: Path, *commands: tuple[str, str]) -> None:
    bot = await GuardBot.open(load_config(config_path), env={})
    try:
        for user, command in commands:
            request = ChatRequest(platform="slack", channel_id="C1", user_id=user, text="")
            await bot.admin(request, command)
    finally:
        await bot.close()


@pytest.fixture
def changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps tables to the terminal width
    config = write_config(tmp_path)
    asyncio.run(
        chat_admin(
            config,
            ("UADMIN", "set best_of 3"),
            ("UADMIN", "set refusal 'Not [bold]here[/bold].' --here"),
            ("UADMIN", "guard disable old"),
            ("UADMIN", "set best_of 4"),
            ("UADMIN", "set best_of 400"),
            ("UMALLORY", "set best_of 1"),
        )
    )
    return config


def test_settings_lists_the_overrides(changed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(changed), "settings", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["scope"], r["key"], r["value"], r["actor"]) for r in rows] == [
        ("channel:slack:C1", "refusal", "Not [bold]here[/bold].", "slack:UADMIN"),
        ("global", "best_of", 4, "slack:UADMIN"),
        ("global", "guard.old.enabled", False, "slack:UADMIN"),
    ]
    assert all(r["ignored"] is None for r in rows)
    assert main(["--config", str(changed), "settings"]) == 0
    table = capsys.readouterr().out
    assert "Not [bold]here[/bold]." in table  # printed as text, not as rich markup
    assert "guard.old.enabled" in table


def test_rows_config_no_longer_accepts_are_marked(
    changed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(tmp_path, with_old_guard=False)  # the operator removed the guard
    assert main(["--config", str(changed), "settings", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert "unknown guard 'old'" in rows["guard.old.enabled"]["ignored"]
    assert rows["best_of"]["ignored"] is None


def test_history_is_the_audit_trail(changed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(changed), "settings", "history", "--json"]) == 0
    rows = list(reversed(json.loads(capsys.readouterr().out)))
    summary = [(r["actor"], r["key"], r["scope"], r["old"], r["new"], r["allowed"]) for r in rows]
    assert summary == [
        ("slack:UADMIN", "best_of", "global", None, 3, True),
        ("slack:UADMIN", "refusal", "channel:slack:C1", None, "Not [bold]here[/bold].", True),
        ("slack:UADMIN", "guard.old.enabled", "global", None, False, True),
        ("slack:UADMIN", "best_of", "global", 3, 4, True),
        ("slack:UADMIN", "best_of", "global", None, None, True),  # rejected value
        ("slack:UMALLORY", None, None, None, None, False),  # refused
    ]
    assert "expected a whole number from 1 to 8" in rows[4]["error"]
    assert rows[5]["error"] == "not an admin" and rows[5]["command"] == "set best_of 1"
    assert all(r["platform"] == "slack" and r["channel_id"] == "C1" for r in rows)
    assert main(["--config", str(changed), "settings", "history", "--changes", "-n", "2"]) == 0
    table = capsys.readouterr().out
    assert "best_of: 3 -> 4" not in table  # -n 2 takes the newest two rows, neither a change
    assert main(["--config", str(changed), "settings", "history"]) == 0
    table = capsys.readouterr().out
    assert "best_of: 3 -> 4" in table and "refused" in table and "rejected" in table


def test_reading_never_writes_the_log(changed: Path, tmp_path: Path) -> None:
    db = tmp_path / "guardbot.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert main(["--config", str(changed), "settings"]) == 0
    assert main(["--config", str(changed), "settings", "history"]) == 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_missing_log_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["--config", str(config), "settings", "history"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("guardbot settings: no decision log at") and "Traceback" not in err
