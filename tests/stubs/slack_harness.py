"""The whole Slack chain for tests: fake Slack, stub LLM, real GuardBot, real HTTP.

`slack_rig` starts the fake Slack Web API, the OpenAI-compatible stub, a
GuardBot over a real SQLite log in ``tmp_path`` and the Slack service, and
gives the test helpers that send signed requests over HTTP and wait for what
the bot did. ``Observed`` wraps the GuardBot only to let tests wait for a
delivery to be recorded; every call goes through to the real object.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.admin import AdminCommands
from adapters.slack.service import SlackService
from bot.app import GuardBot
from bot.config.schema import Config
from middleware.decision_log import DecisionLog
from middleware.llm.model import ChatModel, Completion, Delta, Message, ModelSettings
from middleware.pipeline.streaming import ReplyView
from middleware.types import ChatRequest, Decision
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.stubs.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    event_callback,
    signed_headers,
    slash_command,
)
from tests.support.live_checks import states, words_shown

HTTP_ENV = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
SOCKET_ENV = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}


@dataclass
class Delivered:
    decision: Decision
    sent: bool
    error: str | None


class Observed:
    """Passes every call to the real handler and lets tests wait on deliveries."""

    def __init__(self, inner: GuardBot) -> None:
        self.inner = inner
        self.requests: list[ChatRequest] = []
        self.decisions: list[Decision] = []  # what handle() returned, in order
        self.deliveries: list[Delivered] = []
        self.admin_calls: list[tuple[ChatRequest, str]] = []
        self.admin_gate = asyncio.Event()  # clear it to hold admin commands back
        self.admin_gate.set()
        self._changed = asyncio.Condition()

    async def handle(self, request: ChatRequest, view: ReplyView | None = None) -> Decision:
        self.requests.append(request)
        decision = await self.inner.handle(request, view)
        self.decisions.append(decision)
        async with self._changed:
            self._changed.notify_all()
        return decision

    async def record_delivery(self, decision: Decision, *, sent: bool, error: str | None) -> None:
        await self.inner.record_delivery(decision, sent=sent, error=error)
        self.deliveries.append(Delivered(decision, sent, error))
        async with self._changed:
            self._changed.notify_all()

    async def record_cut_off(self, request: ChatRequest, why: str, elapsed_ms: float = 0.0) -> None:
        await self.inner.record_cut_off(request, why, elapsed_ms)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        return await self.inner.claim_event(platform, event_id)

    async def admin(
        self, request: ChatRequest, command: str, *, platform_admin: bool = False
    ) -> str:
        self.admin_calls.append((request, command))
        await self.admin_gate.wait()
        return await self.inner.admin(request, command, platform_admin=platform_admin)

    @property
    def admin_commands(self) -> AdminCommands[Any]:
        return self.inner.admin_commands

    async def decided(self, count: int = 1, within_s: float = 10.0) -> list[Decision]:
        """Until the handler returned ``count`` decisions (the adapter delivers them next)."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.decisions) >= count)
        return self.decisions

    async def delivered(self, count: int = 1, within_s: float = 10.0) -> list[Delivered]:
        async with asyncio.timeout(within_s), self._changed:
            while len(self.deliveries) < count:
                await self._changed.wait()
        return self.deliveries

    async def answered(self, text: str, within_s: float = 10.0) -> Delivered:
        """The delivery of the answer to the message ``text`` (others may come and go)."""

        def found() -> Delivered | None:
            return next((d for d in self.deliveries if d.decision.request.text == text), None)

        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
        done = found()
        assert done is not None
        return done


class GatedModel:
    """A model that answers only when the test opens the gate (no timing involved).

    It streams as the bot's models do (Slack streams by default): the whole
    text as one piece once the gate opens, then the completion.
    """

    name = "gated"
    offline = False

    def __init__(self, text: str = "the slow answer") -> None:
        self.text = text
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.calls = 0

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        self.calls += 1
        self.started.set()
        await self.gate.wait()
        return Completion(text=self.text, model=self.name, tokens_in=1, tokens_out=1)

    async def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        completion = await self.complete(messages, settings=settings)
        yield completion.text
        yield completion


@dataclass
class SlackRig:
    fake: FakeSlack
    llm: StubOpenAI
    bot: GuardBot
    observed: Observed
    service: SlackService
    http: aiohttp.ClientSession
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(
        self,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
    ) -> tuple[int, str]:
        """POST a signed Events API body to the bot over HTTP; (status, body)."""
        body = json.dumps(payload)
        sent = signed_headers(body, secret=secret, timestamp=timestamp) | dict(headers or {})
        async with self.http.post(self.service.url, data=body, headers=sent) as response:
            return response.status, await response.text()

    def event(self, **event: Any) -> dict[str, Any]:
        """An event_callback envelope with a fresh event id (and ts and team, unless given)."""
        event.setdefault("ts", self.fake.next_ts())
        event.setdefault("team", self.fake.team_id)  # Slack's streams in channels need it
        event.setdefault("event_ts", event["ts"])
        return event_callback(event, event_id=f"Ev{next(self._ids):04d}")

    def mention(
        self, text: str, *, channel: str = "C1", user: str = "U1", **extra: Any
    ) -> dict[str, Any]:
        return self.event(
            type="app_mention", user=user, text=f"<@UBOT> {text}", channel=channel, **extra
        )

    def message(
        self,
        text: str,
        *,
        channel: str = "C1",
        user: str = "U1",
        channel_type: str = "channel",
        **extra: Any,
    ) -> dict[str, Any]:
        return self.event(
            type="message",
            user=user,
            text=text,
            channel=channel,
            channel_type=channel_type,
            **extra,
        )

    def replies(self, thread_ts: str, channel: str = "C1") -> list[str]:
        """The bot's messages in a thread as they read now (the placeholder, if still up)."""
        return [m.text for m in self.fake.thread(channel, thread_ts) if m.user == "UBOT"]

    def assert_every_state_a_prefix(self, placeholder: str = "thinking…") -> list[str]:
        """Every state users saw (placeholder aside) is a prefix of the last, in words.

        Returns the last state's words. The reply is screened and masked before
        the view ever gets it, so a prefix of it never shows unscreened text.
        """
        seen = [[m for m in state if m != placeholder] for state in states(self.fake.changes)]
        final = words_shown(seen[-1])
        for state in seen:
            words = words_shown(state)
            assert words == final[: len(words)], f"not a prefix of the reply: {state}"
        return final

    async def command(
        self, text: str, *, user_id: str, key: str = "cmd"
    ) -> tuple[int, dict[str, Any]]:
        form = slash_command(text, user_id=user_id, response_url=self.fake.response_url(key))
        body = urllib.parse.urlencode(form)
        headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
        async with self.http.post(self.service.url, data=body, headers=headers) as response:
            raw = await response.text()
            return response.status, json.loads(raw) if raw else {}


def bot_config(
    llm_url: str, fake: FakeSlack, *, slack: Mapping[str, Any], extra: Mapping[str, Any]
) -> Config:
    data: dict[str, Any] = {
        "llm": {"provider": "openai", "base_url": llm_url, "max_retries": 0},
        "slack": {"mode": "http", "host": "127.0.0.1", "port": 0, "api_url": fake.api_url, **slack},
        "admin": {"users": ["slack:UADMIN"]},
    }
    data.update(extra)
    return Config.model_validate(data)


@asynccontextmanager
async def slack_rig(
    tmp_path: Path,
    *,
    slack: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    script: Callable[[Recorded], Reply] | None = None,
    model: ChatModel | None = None,
    env: Mapping[str, str] = HTTP_ENV,
) -> AsyncIterator[SlackRig]:
    async with FakeSlack() as fake, StubOpenAI(script) as llm:
        cfg = bot_config(llm.base_url, fake, slack=slack or {}, extra=config or {})
        log = await DecisionLog.open(tmp_path / "guardbot.db")
        bot = GuardBot(cfg, log, env={"OPENAI_API_KEY": "sk-test"}, model=model)
        await bot.settings.load()
        observed = Observed(bot)
        service = SlackService.from_env(cfg.slack, observed, env=env)
        try:
            await service.start()
            async with aiohttp.ClientSession() as http:
                yield SlackRig(fake, llm, bot, observed, service, http)
        finally:
            await service.stop()
            await bot.close()
