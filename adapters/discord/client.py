"""The discord.py client guardbot runs: intents, sharding, readiness, start errors.

discord.py calls hooks on the client object; the two thin subclasses here
(plain and auto-sharded) only hand those calls to the service that owns them.
Startup failures are turned into :class:`AdapterConfigError` messages that
tell the operator what to change, because a raw ``ConnectionClosed 4014`` or a
bot that silently never answers is no help at 3 a.m.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import discord

from adapters.base import AdapterConfigError
from adapters.discord.config import DiscordConfig
from adapters.discord.delivery import NO_PINGS

log = logging.getLogger("guardbot.discord")

# Shown under the bot's name: how to talk to it.
PRESENCE = discord.Activity(type=discord.ActivityType.listening, name="@mentions and DMs")


class ClientOwner(Protocol):
    identify_interval_s: float

    async def sync_commands(self) -> None: ...

    async def on_message(self, message: discord.Message) -> None: ...


def intents() -> discord.Intents:
    """Only what the bot uses; Message Content is privileged (enable it in the portal)."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


class _Hooks:
    """discord.py calls these on the client; they hand over to the owner."""

    owner: ClientOwner

    async def setup_hook(self) -> None:
        await self.owner.sync_commands()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord allows one IDENTIFY per 5 s (per max_concurrency bucket); discord.py's
        # default waits exactly that between shards, configurable here for tests.
        if not initial:
            await asyncio.sleep(self.owner.identify_interval_s)

    async def on_message(self, message: discord.Message) -> None:
        await self.owner.on_message(message)


class GuardClient(_Hooks, discord.Client):
    pass


class ShardedGuardClient(_Hooks, discord.AutoShardedClient):
    pass


def build_client(
    config: DiscordConfig, owner: ClientOwner, *, guild_ready_timeout_s: float
) -> GuardClient | ShardedGuardClient:
    """``[discord] shards`` unset: one connection; "auto" or a count: AutoShardedClient."""
    options: dict[str, Any] = {
        "intents": intents(),
        "allowed_mentions": NO_PINGS,  # the default for every send, besides per-send
        "member_cache_flags": discord.MemberCacheFlags.none(),
        "chunk_guilds_at_startup": False,
        "guild_ready_timeout": guild_ready_timeout_s,
    }
    # guardbot never joins voice: skip discord.py's "PyNaCl is not installed" warnings.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    client: GuardClient | ShardedGuardClient
    if config.shards is None:
        client = GuardClient(**options)
    else:
        count = None if config.shards == "auto" else config.shards
        client = ShardedGuardClient(shard_count=count, **options)
    client.owner = owner
    return client


async def wait_until_serving(
    client: discord.Client, runner: asyncio.Task[None], step_s: float
) -> None:
    """Until every shard is READY, or raise what went wrong.

    The timeout restarts whenever a shard gets ready: big bots log in shard by
    shard, five seconds apart, and that is progress, not a hang.
    """
    sharded = isinstance(client, discord.AutoShardedClient)
    while not client.is_ready():
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(client.wait_until_ready())}
        if sharded:
            waits.add(asyncio.ensure_future(client.wait_for("shard_ready")))
        try:
            async with asyncio.timeout(step_s):
                await asyncio.wait({runner, *waits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if runner.done():
            raise startup_error(None if runner.cancelled() else runner.exception())


def startup_error(exc: BaseException | None) -> AdapterConfigError:
    """What a gateway failure means for the operator."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return AdapterConfigError(
            "Discord: the Message Content Intent is not enabled for this bot. Turn it on in the "
            "Developer Portal (your application → Bot → Privileged Gateway Intents)."
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return AdapterConfigError("Discord rejected the bot token at the gateway (4004).")
    if isinstance(exc, discord.ConnectionClosed) and exc.code in (4010, 4011):
        return AdapterConfigError(
            f'Discord: sharding is required or invalid ({exc.code}); set [discord] shards = "auto"'
        )
    if exc is None:
        return AdapterConfigError("Discord: the gateway connection closed during start")
    return AdapterConfigError(f"Discord: the gateway connection failed: {exc!r}")
