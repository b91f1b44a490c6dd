"""Odd and hostile Discord input, through the real client: answered, recorded, never a crash.

Names and message text are user input: a display name may hold backslashes,
lone surrogates or NUL; a message may be huge or sit in a channel the client
has never seen. Each must end as a reply and a decision in the real log, and
nothing may surface as an unhandled error in discord.py's event loop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapters.discord.interactions import OUT_OF_DATE
from tests.stubs import discord_payloads as p
from tests.stubs.discord_harness import discord_rig
from tests.stubs.discord_payloads import snowflake
from tests.stubs.discord_server import DROP

EPHEMERAL = 1 << 6


def unhandled(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What discord.py reported as an exception nobody handled."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Ignoring")]


async def test_a_mentioned_name_with_backslashes_is_read_as_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        eve = p.user(snowflake(), "eve")
        eve["global_name"] = r"e\q \g<9> \1"  # an escape in a regex replacement
        mentions = [fake.bot_user, eve]
        await fake.post(
            f"say hi to <@!{eve['id']}>", mention_bot=True, extra={"mentions": mentions}
        )
        [delivered] = await rig.delivered(1)
        assert delivered.decision.request.text == r"say hi to @e\q \g<9> \1"
        assert fake.sent[0]["content"] == r"you said: say hi to @e\q \g<9> \1"
    assert unhandled(caplog) == []


async def test_a_name_with_lone_surrogates_and_nul_is_answered_and_recorded(
    tmp_path: Path,
) -> None:
    async with discord_rig(tmp_path) as rig:
        author = p.user(snowflake(), "mallory")
        author["global_name"] = "Mal\ud800lo\x00ry"  # valid JSON (\ud800 escaped), not UTF-8
        await rig.fake.post("hello", mention_bot=True, author=author)
        [delivered] = await rig.delivered(1)
        assert delivered.sent and rig.fake.sent[0]["content"] == "you said: hello"
        [stored] = await rig.bot.log.query(limit=2)
        assert stored.request.user_name == "Mal\ufffdlo\ufffdry"
        assert stored.delivery.status == "sent"


async def test_a_huge_message_is_refused_politely_and_recorded(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        await rig.fake.post("x" * 200_000, mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert delivered.sent and rig.llm.chat_requests() == []  # never sent to the model
        [reply] = rig.fake.sent
        assert 0 < len(reply["content"]) <= 2000
        [stored] = await rig.bot.log.query(limit=2)
        assert stored.action.value == "blocked" and stored.delivery.status == "sent"


@pytest.mark.parametrize("kind", ["never-seen", "unknown-type"])
async def test_a_message_in_a_channel_the_client_does_not_know_is_answered(
    tmp_path: Path, kind: str
) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        channel_id = snowflake()
        if kind == "unknown-type":  # a channel type newer than discord.py, sent at start
            fake.channels[channel_id] = {
                **p.text_channel(channel_id, fake.guild_id, "new"),
                "type": 99,
            }
        await fake.post("hello there", mention_bot=True, channel_id=channel_id)
        [delivered] = await rig.delivered(1)
        assert delivered.sent
        assert fake.sent_to(channel_id)[0]["content"] == "you said: hello there"
        assert delivered.decision.request.channel_id == str(channel_id)


async def test_an_admin_answer_whose_connection_drops_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        fake.callback_failures.append(DROP)
        await fake.slash("status", invoker=fake.admin)
        await fake.wait_for(lambda: any(c.method == "DROPPED" for c in fake.calls))
        await fake.slash("status", invoker=fake.admin)  # the next one is answered as usual
        await fake.wait_for(lambda: len(fake.callbacks) == 1)
        assert fake.callbacks[0]["data"]["content"].startswith("Status for")
    assert any("could not answer /guardbot" in r.getMessage() for r in caplog.records)
    assert unhandled(caplog) == []


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [("retired", {}), ("set", {})],  # a command this version lacks; required options missing
    ids=["unknown-command", "options-changed"],
)
async def test_an_out_of_date_command_form_gets_an_answer_not_a_traceback(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    subcommand: str,
    options: dict[str, str | int | bool],
) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        await fake.slash(subcommand, options, invoker=fake.admin)
        await fake.wait_for(lambda: len(fake.callbacks) == 1)
        [answer] = fake.callbacks
        assert answer["data"]["content"] == OUT_OF_DATE
        assert answer["data"]["flags"] & EPHEMERAL
        assert await rig.bot.log.admin_actions() == []  # nothing ran
    assert unhandled(caplog) == []


async def test_a_reply_to_a_message_the_api_returns_malformed_is_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        parent = snowflake()  # not in the event (Discord omits it at times): fetched over REST
        fake.messages[parent] = {"id": str(parent), "channel_id": str(fake.channel_id)}
        ref = {"type": 0, "message_id": str(parent), "channel_id": str(fake.channel_id)}
        await fake.post("hello", mention_bot=True, extra={"type": 19, "message_reference": ref})
        [delivered] = await rig.delivered(1)
        assert delivered.sent and fake.sent[0]["content"] == "you said: hello"
        assert delivered.decision.request.thread_id == str(parent)  # the chain starts there
        assert any(c.path.endswith(f"/messages/{parent}") for c in fake.calls)
    assert unhandled(caplog) == []
