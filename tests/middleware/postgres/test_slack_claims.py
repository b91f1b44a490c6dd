"""The same Slack event delivered to two bot instances sharing one PostgreSQL is answered once.

Two real Slack services (slack-bolt over HTTP), each with its own GuardBot and
its own connections to one database, both posting to one fake Slack Web API:
a load balancer (or a second Socket Mode connection) hands both the same
signed event, and later a retry of it; one instance answers, the fake records
one placeholder and one reply, and the log holds one decision.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp

from adapters.slack.service import SlackService
from bot.app import GuardBot
from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.url import PgTarget
from tests.stubs.openai_server import StubOpenAI
from tests.stubs.slack_api import FakeSlack, event_callback, signed_headers
from tests.stubs.slack_harness import HTTP_ENV, Observed, bot_config


class Claiming(Observed):
    """Records every claim an instance makes and what it was told."""

    def __init__(self, inner: GuardBot) -> None:
        super().__init__(inner)
        self.claims: list[tuple[str, bool]] = []
        self.claimed = asyncio.Condition()

    async def claim_event(self, platform: str, event_id: str) -> bool:
        won = await super().claim_event(platform, event_id)
        async with self.claimed:
            self.claims.append((event_id, won))
            self.claimed.notify_all()
        return won

    async def tried(self, event_id: str) -> bool:
        async with asyncio.timeout(10), self.claimed:
            await self.claimed.wait_for(lambda: any(e == event_id for e, _ in self.claims))
        return next(won for e, won in self.claims if e == event_id)


@asynccontextmanager
async def instances(
    pg_url: str, fake: FakeSlack, llm: StubOpenAI, count: int
) -> AsyncIterator[list[tuple[Claiming, SlackService]]]:
    cfg = bot_config(llm.base_url, fake, slack={}, extra={})
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            bot = GuardBot(cfg, await PostgresLog.open_url(PgTarget(pg_url)), env={})
            stack.push_async_callback(bot.close)
            await bot.settings.load()
            observed = Claiming(bot)
            service = SlackService.from_env(cfg.slack, observed, env=HTTP_ENV)
            await service.start()
            stack.push_async_callback(service.stop)
            started.append((observed, service))
        yield started


async def send(http: aiohttp.ClientSession, url: str, body: str, **headers: str) -> int:
    async with http.post(url, data=body, headers=signed_headers(body) | headers) as response:
        return response.status


async def test_an_event_delivered_to_two_instances_is_answered_once(pg_url: str) -> None:
    async with (
        FakeSlack() as fake,
        StubOpenAI() as llm,
        instances(pg_url, fake, llm, 2) as bots,
        aiohttp.ClientSession() as http,
    ):
        event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hello both",
                 "channel": "C1", "ts": fake.next_ts()}  # fmt: skip
        event["event_ts"] = event["ts"]
        body = json.dumps(event_callback(event, event_id="EvShared"))
        statuses = await asyncio.gather(*(send(http, s.url, body) for _, s in bots))
        assert statuses == [200, 200]  # both ack: Slack must not retry either
        won = [await observed.tried("EvShared") for observed, _ in bots]
        assert sorted(won) == [False, True]
        winner, winner_service = bots[won.index(True)]
        loser, loser_service = bots[won.index(False)]
        await winner.delivered(1)
        # A late retry reaches the instance that lost: still not answered again.
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert await send(http, loser_service.url, body, **retry) == 200
        for _, service in bots:
            assert service.listeners is not None
            await service.listeners.drain(10.0)  # every answer started has finished
        decisions = await winner.inner.log.query(limit=10)
    assert [len(o.requests) for o in (winner, loser)] == [1, 0]
    assert not loser.deliveries and [d.sent for d in winner.deliveries] == [True]
    placeholders = [c for c in fake.calls_to("chat.postMessage") if c.args["text"] == "thinking…"]
    assert len(placeholders) == 1
    assert [d.request.text for d in decisions] == ["hello both"]
