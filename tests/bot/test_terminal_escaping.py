"""Untrusted text never drives the operator's terminal.

A user (even one refused admin rights), a model or a guard can put an OSC
sequence (sets the window title, or worse), a CSI sequence (clears the screen)
or a right-to-left override (reorders what a line shows) into text the
operator later reads. Every terminal surface must show them visibly
(``\\x1b``, ``\\u202e``) and never emit the raw character.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adapters.render import explain, plain
from bot.app import GuardBot
from bot.cli.main import main
from bot.config.schema import load_config
from middleware.types import ChatRequest
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

OSC, CSI, RLO = "\x1b]0;pwned\x07", "\x1b[2J", "\u202e"
HOSTILE = f"hi {OSC} there {CSI} and {RLO}gnp.exe"
RAW = ("\x1b", "\x07", "\u202e")

CONFIG = """
[llm]
base_url = "{url}"
max_retries = 0

[log]
path = "{db}"

[[guards]]
name = "judge"
kind = "llm_judge"
model = "judge-model"

[admin]
users = ["slack:UADMIN"]
"""


def script(rec: Recorded) -> Reply:
    if rec.body.get("model") == "judge-model":
        verdict = {"unsafe": True, "category": f"x{CSI}", "score": 0.9, "reason": HOSTILE}
        return Reply(text=json.dumps(verdict))
    return Reply(text=HOSTILE, model=f"m{OSC}")


def assert_inert(where: str, text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"raw {raw!r} reached {where}"


def test_plain_shows_every_sequence_visibly() -> None:
    shown = plain(HOSTILE)
    assert shown == "hi \\x1b]0;pwned\\x07 there \\x1b[2J and \\u202egnp.exe"
    assert plain("a\x9bb\u2066c\r\nd", one_line=False) == "a\\x9bb\\u2066c\nd"


@pytest.fixture
def config_path(tmp_path: Path, stub_llm: StubOpenAI) -> Path:
    stub_llm.script = script
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(url=stub_llm.base_url, db=tmp_path / "g.db"))
    return path


async def test_every_terminal_surface_shows_escapes_inert(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-the-stub-0001")
    monkeypatch.setenv("COLUMNS", "200")
    bot = await GuardBot.open(load_config(config_path))
    user = ChatRequest(platform="slack", channel_id="C1", user_id=f"U{OSC}", text=HOSTILE)
    try:
        blocked = await bot.handle(user)
        admin = ChatRequest(platform="slack", channel_id="C1", user_id="UADMIN", text="")
        # A stranger's refused command is on record: a planted command and actor.
        await bot.admin(user, f"set refusal {HOSTILE}")
        surfaces = {
            "admin recent": await bot.admin(admin, "recent"),
            "admin why": await bot.admin(admin, f"why {blocked.id}"),
            "chat --explain": explain(blocked, every_verdict=True),
        }
    finally:
        await bot.close()
    assert blocked.blocked_by == "judge"  # the hostile reason and category are on the decision
    assert "\\x1b" in surfaces["chat --explain"] and "\\u202e" in surfaces["chat --explain"]
    for name, text in surfaces.items():
        assert_inert(name, text)

    commands = {
        "settings history": ["settings", "history"],
        "logs": ["logs"],
        "show": ["show", blocked.id],
        "screen": ["screen", HOSTILE],
    }
    for name, argv in commands.items():
        code = await asyncio.to_thread(main, ["--config", str(config_path), *argv])
        out = capfd.readouterr()
        assert code == 0, (name, out.err)
        assert "\\x1b" in out.out, f"{name} shows no escaped ESC: {out.out!r}"
        assert_inert(name, out.out + out.err)

    # Machine output is read in terminals too (`guardbot logs --json | less`): it stays
    # valid JSON, but bidi marks and C1 controls are \u escapes, never raw characters.
    export = config_path.parent / "export.jsonl"
    json_commands = {
        "logs --json": ["logs", "--json"],
        "show --json": ["show", blocked.id, "--json"],
        "screen --json": ["screen", HOSTILE, "--json"],
        "export": ["export", "--format", "jsonl", "--output", str(export)],
    }
    for name, argv in json_commands.items():
        code = await asyncio.to_thread(main, ["--config", str(config_path), *argv])
        out = capfd.readouterr()
        assert code == 0, (name, out.err)
        text = export.read_text(encoding="utf-8") if name == "export" else out.out
        assert_inert(name, text + out.err)
        rows = [json.loads(line) for line in text.splitlines()] if name == "export" else None
        data = rows if rows is not None else json.loads(text)
        assert RLO in json.dumps(data, ensure_ascii=False), f"{name} lost the text itself"
