"""`/guardbot` as a Discord application command: ephemeral, deferred when slow, checked.

Interactions are dispatched over the fake gateway exactly as Discord sends
them; the answers are read back from the interaction callback and webhook
follow-up requests the real discord.py client made. The commands themselves
are the application's (bot/admin), so these tests also prove the Discord
options turn into command text it understands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.stubs.discord_harness import DiscordRig, discord_rig

MANAGE_GUILD = 1 << 5
EPHEMERAL = 64
REFUSED = "Sorry, admin commands are only for this bot's admins"
GUARDS = {"guards": [{"name": "words", "kind": "blocklist", "stage": "input", "words": ["secret"]}]}


async def answer_of(rig: DiscordRig, count: int = 1) -> dict[str, Any]:
    """The ``count``-th interaction callback; it must be an ephemeral message."""
    await rig.fake.wait_for(lambda: len(rig.fake.callbacks) >= count)
    callback = rig.fake.callbacks[count - 1]
    assert callback["type"] == 4  # CHANNEL_MESSAGE_WITH_SOURCE
    assert callback["data"]["flags"] & EPHEMERAL
    assert callback["data"]["allowed_mentions"]["parse"] == []
    return dict(callback["data"])


async def test_listed_admin_gets_an_ephemeral_answer(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        await rig.fake.slash("status", invoker=rig.fake.admin)
        answer = await answer_of(rig)
        assert answer["content"].startswith("Status for")
        [(request, command)] = rig.observed.admin_calls
        assert command == "status"
        assert (request.platform, request.user_id, request.channel_id) == (
            "discord", rig.fake.admin["id"], str(rig.fake.channel_id),
        )  # fmt: skip
        assert rig.fake.sent == []  # nothing was posted in the channel


async def test_member_with_manage_server_is_an_admin(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        await rig.fake.slash("guard list", permissions=MANAGE_GUILD)
        answer = await answer_of(rig)
        assert not answer["content"].startswith(REFUSED)
        assert "words" in answer["content"]


async def test_manage_server_is_not_enough_when_the_config_says_so(tmp_path: Path) -> None:
    config = {"admin": {"discord_manage_guild": False}}
    async with discord_rig(tmp_path, config=config) as rig:
        await rig.fake.slash("status", permissions=MANAGE_GUILD)
        assert (await answer_of(rig))["content"].startswith(REFUSED)


async def test_non_admin_is_refused_ephemerally_and_the_attempt_is_logged(
    tmp_path: Path,
) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        await rig.fake.slash("guard disable", {"name": "words"})
        answer = await answer_of(rig)
        assert answer["content"].startswith(REFUSED)
        assert f"discord:{rig.fake.member['id']}" in answer["content"]
        [row] = await rig.bot.log.admin_actions()
        assert (row.actor, row.allowed) == (f"discord:{rig.fake.member['id']}", False)
        # the guard is still on
        await rig.fake.post("tell me the secret", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert delivered.decision.blocked


async def test_in_a_dm_only_listed_admins_are_admins(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        await rig.fake.slash("status", dm=True, permissions=MANAGE_GUILD)
        assert (await answer_of(rig, 1))["content"].startswith(REFUSED)
        await rig.fake.slash("status", dm=True, invoker=rig.fake.admin)
        assert (await answer_of(rig, 2))["content"].startswith("Status for")


async def test_slow_command_is_deferred_then_answered_in_a_followup(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, defer_after_s=0.01) as rig:
        rig.observed.admin_gate.clear()  # the command cannot finish until the test says so
        await rig.fake.slash("status", invoker=rig.fake.admin)
        await rig.fake.wait_for(lambda: len(rig.fake.callbacks) == 1)
        [deferred] = rig.fake.callbacks
        assert deferred["type"] == 5  # DEFERRED_CHANNEL_MESSAGE: "guardbot is thinking…"
        assert deferred["data"]["flags"] & EPHEMERAL
        assert rig.fake.followups == []
        rig.observed.admin_gate.set()
        await rig.fake.wait_for(lambda: len(rig.fake.followups) == 1)
        [followup] = rig.fake.followups
        assert followup["content"].startswith("Status for")
        assert followup["flags"] & EPHEMERAL


async def test_set_here_changes_the_reply_in_this_channel_only(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        fake = rig.fake
        options: dict[str, str | int | bool] = {
            "key": "refusal", "value": "Not in #general, sorry.", "here": True,
        }  # fmt: skip
        await fake.slash("set", options, invoker=fake.admin)
        answer = await answer_of(rig)
        assert answer["content"].startswith('Set refusal = "Not in #general, sorry."')
        assert rig.observed.admin_calls[0][1] == "set refusal Not in #general, sorry. --here"
        await fake.post("tell me the secret", mention_bot=True)
        await rig.delivered(1)
        await fake.post("tell me the secret", mention_bot=True, channel_id=fake.other_channel_id)
        await rig.delivered(2)
        assert fake.sent_to(fake.channel_id)[0]["content"] == "Not in #general, sorry."
        assert fake.sent_to(fake.other_channel_id)[0]["content"] == (
            "Sorry, I can't help with that."
        )


async def test_guard_group_and_typed_options_reach_the_admin_commands(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        fake = rig.fake
        await fake.slash("guard disable", {"name": "words"}, invoker=fake.admin)
        assert "words" in (await answer_of(rig, 1))["content"]
        await fake.post("tell me the secret", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert not delivered.decision.blocked
        await fake.slash("recent", {"count": 5, "blocked": True}, invoker=fake.admin)
        await answer_of(rig, 2)
        await fake.slash("help", {"command": "set"}, invoker=fake.admin)
        assert "set KEY VALUE" in (await answer_of(rig, 3))["content"]
        assert [c for _, c in rig.observed.admin_calls] == [
            "guard disable words", "recent 5 --blocked", "help set",
        ]  # fmt: skip
