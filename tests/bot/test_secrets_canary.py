"""A canary key never leaks: not into the log, the shell's output, stderr, or a reply.

The canary is the value of the configured API key variable. It has no known
key shape, so only masking by *value* can catch it; beside it travels a
DeepSeek-style key (``sk-`` + 32 lower-case hex), which masking by *shape*
must catch. Both go in through every door: user messages, admin commands
(allowed and refused), the model's replies, an LLM judge's verdict, an error
body of the model server and a response header echoing ``Authorization``.
The bot runs against the stub OpenAI server through the real ``openai``
client; the log is read back through the real CLI (`bot.cli.main.main`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.cli.main import main, setup_logging
from bot.config.schema import load_config
from middleware.masking import forget_secrets
from middleware.types import ChatRequest
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

CANARY = "CaNaRy-7c1f-not-a-known-key-shape-0042"
DEEPSEEK = "sk-" + "0123456789abcdef" * 2
LEAKS = (CANARY, DEEPSEEK)
ADMIN = ChatRequest(platform="slack", channel_id="C1", user_id="UADMIN", text="")
STRANGER = ChatRequest(platform="slack", channel_id="C1", user_id="UOTHER", text="")

CONFIG = """
[llm]
base_url = "{url}"
api_key_env = "CANARY_KEY"
max_retries = 0

[log]
path = "{db}"

[[guards]]
name = "judge"
kind = "llm_judge"
model = "judge-model"
on_error = "allow"

[admin]
users = ["slack:UADMIN"]
"""


def script(rec: Recorded) -> Reply:
    text = rec.text()
    if rec.body.get("model") == "judge-model":
        reason = f"the user pasted {CANARY} and {DEEPSEEK}"
        verdict = {"unsafe": False, "category": "none", "score": 0.1, "reason": reason}
        return Reply(text=json.dumps(verdict))
    if "break please" in text:
        error = {"error": {"message": f"invalid key {CANARY}, did you mean {DEEPSEEK}?"}}
        return Reply(status=500, raw_body=json.dumps(error))
    return Reply(
        text=f"Your key is {CANARY}; also {DEEPSEEK}.",
        headers={"X-Echo-Authorization": f"Bearer {CANARY}"},
    )


def assert_clean(where: str, text: str) -> None:
    for secret in LEAKS:
        assert secret not in text, f"{secret[:12]}… leaked in {where}"


@pytest.fixture(autouse=True)
def _forget() -> None:
    forget_secrets()  # values remembered by other tests' bots must not help this one


async def test_a_canary_key_never_leaks(
    tmp_path: Path,
    stub_llm: StubOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    stub_llm.script = script
    db = tmp_path / "guardbot.db"
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG.format(url=stub_llm.base_url, db=db))
    monkeypatch.setenv("CANARY_KEY", CANARY)

    setup_logging(verbose=True)  # what `guardbot -v` sets up: stderr is checked below
    try:
        bot = await GuardBot.open(load_config(config_path))
        try:
            logging.getLogger("guardbot.test").warning("starting with key %s", CANARY)
            answers = [
                (await bot.handle(ChatRequest(platform="slack", channel_id="C1", text=t))).reply
                for t in (f"my key is {CANARY}", f"and {DEEPSEEK}", "break please")
            ]
            answers += [
                await bot.admin(ADMIN, f'set refusal "Ask ops; not {CANARY} or {DEEPSEEK}"'),
                await bot.admin(ADMIN, f"set model {DEEPSEEK}"),
                await bot.admin(ADMIN, "settings"),
                await bot.admin(STRANGER, f'set refusal "{CANARY} {DEEPSEEK}"'),
                await bot.admin(ADMIN, "recent"),
            ]
            decision_ids = [d.id for d in await bot.log.query(limit=10)]
        finally:
            await bot.close()
    finally:
        setup_logging(verbose=False)
    for n, answer in enumerate(answers):
        assert_clean(f"reply {n}", answer)
    assert "[SECRET:" in answers[0]  # masked, not dropped: the user sees that it was
    out = capfd.readouterr()
    assert "starting with key" in out.err and "[SECRET:configured]" in out.err
    assert_clean("stdout/stderr of the bot with -v", out.out + out.err)

    for name in ("guardbot.db", "guardbot.db-wal"):
        if (tmp_path / name).exists():
            data = (tmp_path / name).read_bytes()
            for secret in LEAKS:
                assert secret.encode() not in data, f"{secret[:12]}… stored in {name}"

    commands = [
        ["logs"], ["logs", "--json"], ["logs", "-q", "key"],
        *(["show", i] for i in decision_ids), *(["show", i, "--json"] for i in decision_ids),
        ["export"], ["export", "--format", "csv"],
        ["settings"], ["settings", "--json"],
        ["settings", "history"], ["settings", "history", "--json"],
    ]  # fmt: skip
    for argv in commands:
        # In a thread: the CLI runs its own event loop, as from the shell.
        code = await asyncio.to_thread(main, ["-v", "--config", str(config_path), *argv])
        out = capfd.readouterr()
        assert code == 0, (argv, out.err)
        assert_clean(" ".join(argv[:2]), out.out + out.err)
    assert len(commands) == 9 + 2 * len(decision_ids)
