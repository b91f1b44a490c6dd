"""Starting and stopping the Discord service: clear errors, graceful shutdown, shards.

Startup failures must be one clear AdapterConfigError (never a traceback, never
the token); shutdown must finish the replies in flight before logging out, and
leave a record (read back from the real log) of every message it did not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import discord
import pytest

from adapters.base import AdapterConfigError
from adapters.discord.config import DiscordConfig
from adapters.discord.service import (
    ARRIVED_STOPPING,
    DiscordService,
    discord_requested,
    read_token,
)
from adapters.live import CUT_OFF_NOTE
from adapters.slots import NOT_ANSWERED
from bot.app import SHUTDOWN_ERROR, GuardBot
from bot.cli.run import serve
from bot.config.schema import Config
from middleware.decision_log import DecisionLog
from tests.stubs.discord_harness import TOKEN, discord_rig
from tests.stubs.discord_server import FakeDiscord
from tests.stubs.openai_server import Recorded, Reply


def test_discord_py_is_the_version_the_fake_speaks_for() -> None:
    # The fake gateway and REST API follow discord.py 2.7.1's requests (pinned in
    # pyproject.toml); another version may ask for more than the fake answers.
    assert discord.__version__ == "2.7.1"


async def test_token_is_required_and_checked_before_connecting(tmp_path: Path) -> None:
    config = DiscordConfig()
    log = await DecisionLog.open(tmp_path / "guardbot.db")
    bot = GuardBot(Config(), log, env={})
    try:
        with pytest.raises(AdapterConfigError, match="DISCORD_TOKEN is not set"):
            DiscordService.from_env(config, bot, env={})
        with pytest.raises(AdapterConfigError, match="does not look like a bot token"):
            DiscordService.from_env(config, bot, env={"DISCORD_TOKEN": "1234567890"})
        assert read_token(config, {"DISCORD_TOKEN": f"Bot {TOKEN}"}) == TOKEN  # prefix dropped
        with pytest.raises(AdapterConfigError, match="MY_BOT_TOKEN is not set"):
            read_token(DiscordConfig(token_env="MY_BOT_TOKEN"), {"DISCORD_TOKEN": TOKEN})
        assert not discord_requested(config, {})
        assert discord_requested(config, {"DISCORD_TOKEN": TOKEN})
        assert not discord_requested(DiscordConfig(enabled=False), {"DISCORD_TOKEN": TOKEN})
    finally:
        await bot.close()


async def test_rejected_token_is_a_clear_error(tmp_path: Path) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        log = await DecisionLog.open(tmp_path / "guardbot.db")
        bot = GuardBot(Config(), log, env={})
        with fake.patched():
            other = "MTk5OTk5.GzZzZz.some-other-token"
            service = DiscordService.from_env(DiscordConfig(), bot, env={"DISCORD_TOKEN": other})
            with pytest.raises(AdapterConfigError, match="rejected the token") as caught:
                await service.start()
        assert other not in str(caught.value)
        assert service.client.is_closed()
        assert fake.identifies == []  # it never got as far as the gateway
        await bot.close()


async def test_missing_message_content_intent_is_explained(tmp_path: Path) -> None:
    fake = FakeDiscord(token=TOKEN, close_on_identify=4014)
    with pytest.raises(AdapterConfigError, match="Message Content Intent"):
        async with discord_rig(tmp_path, fake=fake):
            pass
    assert fake.sessions and all(s.ws.closed for s in fake.sessions)


async def test_shutdown_finishes_the_reply_in_flight_and_takes_no_new_ones(
    tmp_path: Path,
) -> None:
    hold = asyncio.Event()

    def held(rec: Recorded) -> Reply:
        return Reply(text="finished after the signal", hold=hold)

    async with discord_rig(tmp_path, script=held) as rig:
        fake, service = rig.fake, rig.service
        await fake.post("start something slow", mention_bot=True)
        await rig.llm.request_seen.wait()  # the reply is now in flight
        stopping = asyncio.create_task(service.stop())
        await service.stopping.wait()
        late = asyncio.create_task(
            service.client.wait_for("message", check=lambda m: m.content.endswith("too late"))
        )
        await fake.post("too late", mention_bot=True)
        await late  # the client received it while stopping...
        await fake.slash("status", invoker=fake.admin)  # admin commands get a polite no
        await fake.wait_for(lambda: len(fake.callbacks) == 1)
        assert fake.callbacks[0]["data"]["content"].startswith("guardbot is restarting")
        assert not stopping.done()
        hold.set()
        await stopping
        [delivered] = rig.observed.deliveries
        assert delivered.sent and delivered.decision.reply == "finished after the signal"
        assert [r.text for r in rig.observed.requests] == ["start something slow"]  # ...not taken
        assert [m["content"] for m in fake.sent] == ["finished after the signal"]
        assert service.client.is_closed()
        assert all(s.ws.closed for s in fake.sessions)  # logged out of the gateway
        # ...but it is on record: received, not answered, nothing posted for it
        records = {d.request.text: d for d in await rig.bot.log.query(limit=5)}
        assert sorted(records) == ["start something slow", "too late"]
        skipped = records["too late"]
        assert (skipped.action.value, skipped.error) == ("error", ARRIVED_STOPPING)
        assert skipped.delivery.status == "none" and skipped.reply == ""


async def test_shutdown_records_a_message_still_waiting_for_a_slot(tmp_path: Path) -> None:
    hold = asyncio.Event()

    def held(rec: Recorded) -> Reply:
        return Reply(text="the first one's answer", hold=hold)

    async with discord_rig(tmp_path, discord={"max_in_flight": 1}, script=held) as rig:
        fake, service = rig.fake, rig.service
        await fake.post("first", mention_bot=True)
        await rig.llm.request_seen.wait()  # "first" holds the only slot
        waiting = await fake.post("second", mention_bot=True)
        # typing starts just before a message asks for its slot: "second" is queued now
        await fake.wait_for(lambda: len(fake.typing) == 2)
        stopping = asyncio.create_task(service.stop())
        await service.stopping.wait()  # no slot is handed out from here on...
        hold.set()  # ...not even the one "first" frees now
        await stopping
        assert [r.text for r in rig.observed.requests] == ["first"]  # "second" never ran
        assert len(rig.llm.chat_requests()) == 1
        assert [m["content"] for m in fake.sent] == ["the first one's answer"]
        records = {d.request.text: d for d in await rig.bot.log.query(limit=5)}
        assert sorted(records) == ["first", "second"]
        assert records["first"].delivery.status == "sent"
        queued = records["second"]
        assert queued.request.message_id == waiting["id"]
        assert (queued.action.value, queued.error) == ("error", NOT_ANSWERED)
        assert queued.delivery.status == "none"


async def test_shutdown_gives_up_on_replies_after_the_timeout(tmp_path: Path) -> None:
    never = asyncio.Event()

    def stuck(rec: Recorded) -> Reply:
        return Reply(hold=never)

    discord_cfg = {"shutdown_timeout_s": 0.05}
    async with discord_rig(tmp_path, discord=discord_cfg, script=stuck) as rig:
        await rig.fake.post("this will never finish", mention_bot=True)
        await rig.llm.request_seen.wait()
        await rig.service.stop()
        [request] = rig.llm.chat_requests()
        await request.done.wait()
        assert request.closed_early  # cancelled: the provider stops generating
        assert rig.fake.sent == [] and rig.observed.deliveries == []


def story(never: asyncio.Event) -> Callable[[Recorded], Reply]:
    """A streamed reply whose second piece never comes: shutdown cuts it off after one."""
    return lambda _r: Reply(pieces=["Part one is here. ", "never sent"], pauses={1: never})


ONE_CHUNK_A_SENTENCE = {"pipeline": {"chunk_chars": 1}}


async def test_shutdown_mid_stream_ends_the_reply_on_the_cut_off_note(tmp_path: Path) -> None:
    """The bot gives the view the shown text and the note; the edit showing it still waits
    its turn (the edit interval) and must not be cancelled with the answer."""
    never = asyncio.Event()
    discord_cfg = {"shutdown_timeout_s": 0.05, "min_edit_interval_s": 1.0}
    async with discord_rig(
        tmp_path, discord=discord_cfg, config=ONE_CHUNK_A_SENTENCE, script=story(never)
    ) as rig:
        fake = rig.fake
        await fake.post("a long story", mention_bot=True)
        await fake.wait_for(lambda: bool(fake.sent))
        [first] = fake.sent
        assert first["content"].strip() == "Part one is here."
        await rig.service.stop()

        cut_off = f"{first['content']}\n\n{CUT_OFF_NOTE}"
        assert fake.edits and fake.edits[-1]["content"] == cut_off
        assert fake.messages[int(first["id"])]["content"] == cut_off  # what the user reads
        assert len(fake.sent) == 1  # no second message
        [generation] = rig.llm.chat_requests()
        await generation.done.wait()
        assert generation.closed_early
        [decision] = await rig.bot.log.query(limit=5)
        assert decision.error == SHUTDOWN_ERROR and decision.reply == cut_off
        assert decision.delivery.status == "failed"
        assert "the view was given a cut-off note" in (decision.delivery.error or "")


async def test_a_discord_that_does_not_answer_the_cut_off_edit_does_not_hold_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    never, answer = asyncio.Event(), asyncio.Event()
    discord_cfg = {"shutdown_timeout_s": 0.05, "min_edit_interval_s": 0.0}
    async with discord_rig(
        tmp_path,
        discord=discord_cfg,
        config=ONE_CHUNK_A_SENTENCE,
        script=story(never),
        cut_off_budget_s=0.2,
    ) as rig:
        fake = rig.fake
        fake.edit_gates.append(answer)  # Discord takes the next edit and never answers it
        await fake.post("a long story", mention_bot=True)
        await fake.wait_for(lambda: bool(fake.sent))
        try:
            async with asyncio.timeout(10):  # a bound for a hang, far above the budget
                await rig.service.stop()
            held = [c for c in fake.calls if c.method == "HELD"]
            assert [c.body["content"] for c in held] == [
                f"{fake.sent[0]['content']}\n\n{CUT_OFF_NOTE}"
            ]
            assert fake.edits == []  # abandoned, not applied
            assert any("not updated within 0.2 s" in r.getMessage() for r in caplog.records)
        finally:
            answer.set()  # let the fake's handler end


async def test_shutdown_during_the_last_edit_still_finishes_the_reply_and_records_it(
    tmp_path: Path,
) -> None:
    """The decision is on record and the adapter is editing in its reply when the stop's
    timeout cancels the answer: the edit is made again within the budget, and delivered."""
    second, answer = asyncio.Event(), asyncio.Event()
    script = lambda _r: Reply(pieces=["Part one. ", "Part two."], pauses={1: second})  # noqa: E731
    discord_cfg = {"shutdown_timeout_s": 0.05, "min_edit_interval_s": 0.0}
    async with discord_rig(
        tmp_path, discord=discord_cfg, config=ONE_CHUNK_A_SENTENCE, script=script
    ) as rig:
        fake = rig.fake
        fake.edit_gates.append(answer)  # Discord holds the next edit without answering
        await fake.post("two parts", mention_bot=True)
        await fake.wait_for(lambda: bool(fake.sent))
        second.set()
        await fake.wait_for(lambda: any(c.method == "HELD" for c in fake.calls))
        await rig.observed.decided(1)  # on record: only the held edit is left
        try:
            await rig.service.stop()
        finally:
            answer.set()
        [delivered] = rig.observed.deliveries
        assert delivered.sent and delivered.error is None
        [first] = fake.sent
        assert fake.messages[int(first["id"])]["content"] == "Part one. Part two."
        [decision] = await rig.bot.log.query(limit=5)
        assert decision.delivery.status == "sent" and decision.reply == "Part one. Part two."


@pytest.mark.parametrize("shards", ["auto", 2])
async def test_sharded_client_connects_every_shard(tmp_path: Path, shards: str | int) -> None:
    fake = FakeDiscord(token=TOKEN, shard_count=2)
    async with discord_rig(tmp_path, fake=fake, discord={"shards": shards}) as rig:
        assert isinstance(rig.service.client, discord.AutoShardedClient)
        assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
        asked = [c.path for c in fake.calls if c.path == "/gateway/bot"]
        assert bool(asked) == (shards == "auto")  # a fixed count needs no recommendation
        await fake.post("hello shards", mention_bot=True)
        await rig.delivered(1)
        assert fake.sent_to(fake.channel_id)[0]["content"] == "you said: hello shards"


async def test_the_token_never_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with discord_rig(tmp_path) as rig:
        await rig.fake.post("hello", mention_bot=True)
        await rig.delivered(1)
        await rig.fake.slash("status", invoker=rig.fake.admin)
        await rig.fake.wait_for(lambda: len(rig.fake.callbacks) == 1)
    assert caplog.records
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_guardbot_run_serves_discord_until_stopped(tmp_path: Path) -> None:
    """`guardbot run` with DISCORD_TOKEN set (discord.py waits ~2 s for guilds at start)."""
    async with FakeDiscord(token=TOKEN) as fake:
        config = Config.model_validate(
            {"llm": {"provider": "echo"}, "log": {"path": str(tmp_path / "run.db")}}
        )
        stop = asyncio.Event()
        with fake.patched():
            running = asyncio.create_task(serve(config, {"DISCORD_TOKEN": TOKEN}, stop))
            await fake.wait_for(lambda: bool(fake.presences), 10)  # sent once it serves
            await fake.post("hello from run", mention_bot=True)
            await fake.wait_for(lambda: len(fake.sent) == 1, 10)
            stop.set()
            assert await running == 0
        assert all(s.ws.closed for s in fake.sessions)
        log = await DecisionLog.open(tmp_path / "run.db")
        try:
            [row] = await log.query(limit=5)
            assert row.delivery.status == "sent" and row.request.platform == "discord"
        finally:
            await log.close()


async def test_guardbot_run_exits_when_the_gateway_ends_for_good(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After READY, Discord closes with 4004 (token reset): `guardbot run` exits 1."""
    async with FakeDiscord(token=TOKEN) as fake:
        config = Config.model_validate(
            {"llm": {"provider": "echo"}, "log": {"path": str(tmp_path / "run.db")}}
        )
        stop = asyncio.Event()
        with fake.patched():
            running = asyncio.create_task(serve(config, {"DISCORD_TOKEN": TOKEN}, stop))
            await fake.wait_for(lambda: bool(fake.presences), 10)  # serving
            await fake.close_gateway(4004)
            async with asyncio.timeout(10):
                assert await running == 1
        assert not stop.is_set()  # it did not wait for a signal
        err = capsys.readouterr().err
        expected = "Discord rejected the bot token at the gateway (4004); shutting down"
        assert f"guardbot: {expected}" in err
        assert TOKEN not in err


async def test_the_service_reports_a_gateway_that_ended(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        assert not rig.service.failed.is_set()
        await rig.fake.close_gateway(4004)
        async with asyncio.timeout(5):
            await rig.service.failed.wait()
        assert "4004" in rig.service.failure
        # it takes no more messages; stop() still works afterwards (the rig calls it)
        assert not rig.service._accepting
