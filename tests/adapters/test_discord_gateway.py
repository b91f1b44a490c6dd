"""Bad gateway input never ends the bot: malformed events are skipped, broken frames resumed.

A real discord.py client is logged in to the fake gateway, which then sends
what Discord should never send: a MESSAGE_CREATE without ``content`` or
``channel_id``, a frame that is not JSON, a frame that is JSON but not an
object. Each must cost one log line and nothing else: the service keeps
serving (``failed`` stays clear) and the next good message is answered.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.stubs import discord_payloads as p
from tests.stubs.discord_harness import TOKEN, DiscordRig, discord_rig
from tests.stubs.discord_server import FakeDiscord


def gateway_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("guardbot.discord") and r.levelno >= logging.WARNING
    ]


async def answered_after(rig: DiscordRig, text: str) -> None:
    """A good message after the bad input is answered, and the service never failed."""
    await rig.fake.post(text, mention_bot=True)
    [done] = await rig.delivered(1)
    assert done.sent and rig.fake.sent[-1]["content"] == f"you said: {text}"
    assert not rig.service.failed.is_set() and not rig.service.client.is_closed()


@pytest.mark.parametrize("missing", ["content", "channel_id", "author", "id"])
async def test_a_message_event_missing_a_field_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, missing: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        data = p.message(p.snowflake(), fake.channel_id, fake.member, "hi", guild_id=fake.guild_id)
        del data[missing]
        await fake.dispatch("MESSAGE_CREATE", data, guild_id=fake.guild_id)
        await answered_after(rig, "still there?")
        [warning] = gateway_warnings(caplog)
        assert "malformed MESSAGE_CREATE" in warning
        assert fake.resumes == [] and len(fake.identifies) == 1  # skipped, not reconnected
        assert [r.text for r in rig.observed.requests] == ["still there?"]
        assert not [r for r in caplog.records if r.exc_info]  # one line, no traceback


@pytest.mark.parametrize("frame", ["{not json", "[1, 2]", '"text"', '{"op": 0, "t": "READY"}'])
async def test_a_broken_frame_resumes_the_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        session_id = fake.sessions[0].session_id
        await fake.send_raw(frame)
        await fake.wait_for(lambda: len(fake.resumes) == 1)
        await answered_after(rig, "back again?")
        [warning] = gateway_warnings(caplog)
        assert "resuming" in warning
        # RESUME, not a new IDENTIFY: Discord replays what was missed, nothing is lost
        assert fake.resumes[0]["session_id"] == session_id and len(fake.identifies) == 1
        assert not [r for r in caplog.records if r.exc_info]


async def test_a_sharded_client_skips_and_resumes_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeDiscord(token=TOKEN, shard_count=2)
    async with discord_rig(tmp_path, fake=fake, discord={"shards": 2}) as rig:
        data = p.message(p.snowflake(), fake.channel_id, fake.member, "x", guild_id=fake.guild_id)
        del data["content"]
        await fake.dispatch("MESSAGE_CREATE", data, guild_id=fake.guild_id)
        await fake.send_raw("{not json")
        await fake.wait_for(lambda: len(fake.resumes) == 1)
        await answered_after(rig, "sharded and alive?")
        assert len(gateway_warnings(caplog)) == 2 and len(fake.identifies) == 2
