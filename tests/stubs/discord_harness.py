"""The whole Discord chain for tests: fake Discord, stub LLM, real GuardBot.

`discord_rig` starts the fake Discord (gateway + REST), the OpenAI-compatible
stub, a GuardBot over a real SQLite log in ``tmp_path`` and the Discord
service with a real discord.py client logged in to the fake. ``Observed``
(shared with the Slack tests) passes every call through to the real GuardBot
and lets a test wait until a delivery has been recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.discord.service import DiscordService
from bot.app import GuardBot
from bot.config.schema import Config
from middleware.decision_log import DecisionLog
from middleware.llm.model import ChatModel
from tests.stubs.discord_server import FakeDiscord
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.stubs.slack_harness import Observed

TOKEN = "MTAxMjM0NTY3ODkw.GfAkEs.fake-discord-token-for-tests"


def echo_last(rec: Recorded) -> Reply:
    """The stub LLM's default: answer with the user's last message."""
    messages = rec.body.get("messages") or [{}]
    return Reply(text=f"you said: {messages[-1].get('content', '')}")


@dataclass
class DiscordRig:
    fake: FakeDiscord
    llm: StubOpenAI
    bot: GuardBot
    observed: Observed
    service: DiscordService

    async def delivered(self, count: int = 1) -> list[Any]:
        return await self.observed.delivered(count)


def bot_config(llm_url: str, fake: FakeDiscord, **sections: Mapping[str, Any]) -> Config:
    data: dict[str, Any] = {
        "llm": {"provider": "openai", "base_url": llm_url, "max_retries": 0},
        "admin": {"users": [f"discord:{fake.admin['id']}"]},
    }
    for name, section in sections.items():
        data[name] = {**data.get(name, {}), **section} if isinstance(section, dict) else section
    return Config.model_validate(data)


@asynccontextmanager
async def discord_rig(
    tmp_path: Path,
    *,
    discord: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    script: Callable[[Recorded], Reply] | None = echo_last,
    model: ChatModel | None = None,
    fake: FakeDiscord | None = None,
    **service_options: Any,
) -> AsyncIterator[DiscordRig]:
    fake = fake or FakeDiscord(token=TOKEN)
    async with fake, StubOpenAI(script) as llm:
        cfg = bot_config(llm.base_url, fake, discord=dict(discord or {}), **dict(config or {}))
        log = await DecisionLog.open(tmp_path / "guardbot.db")
        bot = GuardBot(cfg, log, env={"OPENAI_API_KEY": "sk-test"}, model=model)
        await bot.settings.load()
        observed = Observed(bot)
        # discord.py's waits for more guilds and between shard logins, shortened for tests
        service_options.setdefault("guild_ready_timeout_s", 0.05)
        service_options.setdefault("identify_interval_s", 0.0)
        with fake.patched():
            service = DiscordService.from_env(
                cfg.discord, observed, env={"DISCORD_TOKEN": fake.token}, **service_options
            )
            try:
                await service.start()
                yield DiscordRig(fake, llm, bot, observed, service)
            finally:
                await service.stop()
                await bot.close()
