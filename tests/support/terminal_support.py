"""A small real decision log for the terminal tests: a config file, a few decisions
(one hostile, three identical), and optionally a runtime override made as an admin would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.cli.main import main
from bot.config.runtime import GLOBAL
from bot.config.schema import default_config_text, load_config
from middleware.decision_log import DecisionLog
from middleware.types import ChatRequest, Decision

INSULT = "you are a fucking idiot"
HOSTILE = "\x1b[2J\x1b[31mred alert\x1b[0m [bold]markup[/bold]"
LONG = "what is the weather like in the mountains in december, and should I bring a coat?"
MESSAGES = ["hello there", LONG, HOSTILE, INSULT, INSULT, INSULT]


@dataclass
class Logged:
    folder: Path
    config: Path
    db: Path
    decisions: list[Decision]


async def make_log(folder: Path, *, override: bool = False) -> Logged:
    """``override``: profanity disabled globally from chat *before* the messages, as in the
    issue, so the three insults were answered, and a stricter config would block them."""
    db = folder / "guardbot.db"
    config = folder / "config.toml"
    config.write_text(
        default_config_text().replace('path = "guardbot.db"', f'path = "{db}"'), encoding="utf-8"
    )
    log = await DecisionLog.open(db)
    bot = GuardBot(load_config(config), log, env={})
    try:
        await bot.settings.load()
        if override:
            await bot.settings.write(
                GLOBAL, "guard.profanity.enabled", False, actor="console:ann", platform="console",
                channel_id="console", command="/admin guard disable profanity",
            )  # fmt: skip
        decisions = []
        for i, text in enumerate(MESSAGES):
            request = ChatRequest(
                platform="console", channel_id="console", thread_id=f"t{i}", user_id="u1",
                user_name="ann", text=text,
            )  # fmt: skip
            decisions.append(await bot.handle(request))
    finally:
        await bot.close()
    return Logged(folder, config, db, decisions)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
