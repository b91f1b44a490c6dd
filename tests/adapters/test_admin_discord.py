"""Admin commands through Discord's `/guardbot` application command, end to end.

A real discord.py client logged in to the fake gateway receives the
interaction; the answer is read from the interaction callback it made. What
these add to the adapter's own tests: bad values and unknown keys or guards
change nothing, and a change made from Discord survives a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.stubs.discord_harness import DiscordRig, discord_rig

EPHEMERAL = 64
GUARDS = {"guards": [{"name": "words", "kind": "blocklist", "stage": "input", "words": ["secret"]}]}


async def answer_of(rig: DiscordRig, count: int) -> str:
    await rig.fake.wait_for(lambda: len(rig.fake.callbacks) >= count)
    callback: dict[str, Any] = rig.fake.callbacks[count - 1]
    assert callback["data"]["flags"] & EPHEMERAL
    return str(callback["data"]["content"])


async def test_bad_values_from_discord_change_nothing(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        fake = rig.fake
        await fake.slash("set", {"key": "best_of", "value": "99"}, invoker=fake.admin)
        assert await answer_of(rig, 1) == (
            "Not changed: best_of: '99' is not valid; expected a whole number from 1 to 8"
        )
        await fake.slash("guard threshold", {"name": "words", "value": "0.5"}, invoker=fake.admin)
        assert "guard 'words' (blocklist) has no threshold" in await answer_of(rig, 2)
        await fake.slash("guard disable", {"name": "nope"}, invoker=fake.admin)
        assert "unknown guard 'nope'; guards: words" in await answer_of(rig, 3)
        await fake.slash("set", {"key": "log.path", "value": "/tmp/evil.db"}, invoker=fake.admin)
        assert "unknown setting 'log.path'" in await answer_of(rig, 4)
        assert await rig.bot.log.settings() == []
        rows = await rig.bot.log.admin_actions()
        assert len(rows) == 4 and all(r.allowed and r.error and r.new is None for r in rows)
        await fake.post("tell me the secret", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert delivered.decision.blocked


async def test_a_change_from_discord_survives_a_restart(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, config=GUARDS) as rig:
        await rig.fake.slash("guard disable", {"name": "words"}, invoker=rig.fake.admin)
        assert (await answer_of(rig, 1)).startswith("Set guard.words.enabled = false globally")
    async with discord_rig(tmp_path, config=GUARDS) as rig:  # a new process on the same log
        await rig.fake.post("tell me the secret", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert not delivered.decision.blocked
        [row] = await rig.bot.log.settings()
        assert (row.scope, row.key, row.value) == ("global", "guard.words.enabled", False)
        assert row.actor.startswith("discord:")
