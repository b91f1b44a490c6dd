"""Discord shard ranges: instances sharing one bot each run their own shards, together all.

``[discord] shard_ids`` + ``shard_count`` make discord.py's AutoShardedClient
identify only those shards; the fake gateway records every IDENTIFY's
``shard``. Two real clients with disjoint ranges cover the four shards once,
and a guild's message reaches (and is answered by) only the instance that
runs its shard. Ranges that would leave a shard to nobody, or run one twice
in an instance, are configuration errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest
from pydantic import ValidationError

from adapters.discord.config import DiscordConfig
from adapters.discord.service import DiscordService
from tests.stubs.discord_harness import TOKEN, discord_rig
from tests.stubs.discord_server import FakeDiscord
from tests.stubs.slack_harness import Observed


def identified(fake: FakeDiscord) -> list[tuple[int, int]]:
    return sorted((int(i["shard"][0]), int(i["shard"][1])) for i in fake.identifies)


async def test_two_instances_with_disjoint_ranges_identify_their_own_shards(
    tmp_path: Path,
) -> None:
    fake = FakeDiscord(token=TOKEN, shard_count=4)
    first = {"shard_ids": [0, 1], "shard_count": 4}
    async with discord_rig(tmp_path, fake=fake, discord=first) as rig:
        assert isinstance(rig.service.client, discord.AutoShardedClient)
        assert identified(fake) == [(0, 4), (1, 4)]
        # The second instance: its own client and handler, the same bot and gateway.
        config = rig.service.config.model_copy(update={"shard_ids": [2, 3]})
        other = Observed(rig.bot)
        service = DiscordService.from_env(
            config, other, env={"DISCORD_TOKEN": TOKEN},
            guild_ready_timeout_s=0.05, identify_interval_s=0.0,
        )  # fmt: skip
        await service.start()
        try:
            assert identified(fake) == [(0, 4), (1, 4), (2, 4), (3, 4)]
            assert not [c for c in fake.calls if c.path == "/gateway/bot"]  # no recommendation
            owner = (fake.guild_id >> 22) % 4
            await fake.post("whose shard?", mention_bot=True)
            answering = rig.observed if owner in (0, 1) else other
            await answering.delivered(1)
        finally:
            await service.stop()
        silent = other if answering is rig.observed else rig.observed
        assert [d.decision.request.text for d in answering.deliveries] == ["whose shard?"]
        assert silent.requests == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"shard_ids": [0, 4], "shard_count": 4}, "outside 0..3"),
        ({"shard_ids": [1, 1], "shard_count": 2}, "more than once"),
        ({"shard_ids": [], "shard_count": 2}, "no shard"),
        ({"shard_ids": [0]}, "go together"),
        ({"shard_count": 2}, "go together"),
        ({"shards": 2, "shard_ids": [0], "shard_count": 2}, "not both"),
    ],
)
def test_a_shard_range_that_cannot_work_is_refused(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DiscordConfig.model_validate(section)
