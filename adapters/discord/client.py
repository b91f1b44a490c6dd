"""The discord.py client guardbot runs: intents, sharding, readiness, start errors.

discord.py calls hooks on the client object; the two thin subclasses here
(plain and auto-sharded) only hand those calls to the service that owns them.
Startup failures are turned into :class:`AdapterConfigError` messages that
tell the operator what to change, because a raw ``ConnectionClosed 4014`` or a
bot that silently never answers is no help at 3 a.m.

discord.py lets any exception from reading a gateway frame end ``connect()``,
so one malformed event (a MESSAGE_CREATE without ``content``) or one frame that
is not JSON would stop the bot for good. :func:`tolerate_bad_frames` turns the
first into a skipped event and the second into a RESUME (Discord replays what
was missed); only close codes discord.py cannot recover from stay fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import discord
from discord.gateway import DiscordWebSocket, ReconnectWebSocket

from adapters.base import AdapterConfigError
from adapters.discord.config import DiscordConfig
from adapters.discord.delivery import NO_PINGS

log = logging.getLogger("guardbot.discord")

# What discord.py's reconnect logic already handles (or raises on purpose): passed on.
_HANDLED_BY_DISCORD_PY = (
    ReconnectWebSocket,
    discord.ConnectionClosed,
    discord.HTTPException,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)
_MAX_DETAIL = 200  # gateway data is not ours: keep its part of a log line short

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
    """``[discord] shards`` unset: one connection; "auto" or a count: AutoShardedClient;
    ``shard_ids`` + ``shard_count``: AutoShardedClient running only those shards."""
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
    if config.shard_ids is not None:
        client = ShardedGuardClient(
            shard_ids=config.shard_ids, shard_count=config.shard_count, **options
        )
    elif config.shards is None:
        client = GuardClient(**options)
    else:
        count = None if config.shards == "auto" else config.shards
        client = ShardedGuardClient(shard_count=count, **options)
    client.owner = owner
    tolerate_bad_frames(client)
    return client


def _detail(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def tolerate_bad_frames(client: discord.Client) -> None:
    """Skip events discord.py cannot parse; resume the session after an unreadable frame.

    Both hooks sit on the client's own connection state, so every websocket it
    opens (each reconnect, each shard) gets them, and no module of discord.py
    is patched.
    """
    state = client._connection
    for event, parse in list(state.parsers.items()):
        state.parsers[event] = _skipping(event, parse)
    update_references = state._update_references

    def on_new_websocket(ws: DiscordWebSocket) -> None:
        _resume_on_bad_frame(ws)
        update_references(ws)

    state._update_references = on_new_websocket  # type: ignore[method-assign]


def _skipping(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    def parse_or_skip(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            # The sequence number was taken already, so a later RESUME will not replay it.
            log.warning("Discord: skipped a malformed %s event (%s)", event, _detail(exc))

    return parse_or_skip


def _resume_on_bad_frame(ws: DiscordWebSocket) -> None:
    receive = ws.received_message

    async def received_message(msg: Any, /) -> None:
        try:
            await receive(msg)
        except _HANDLED_BY_DISCORD_PY:
            raise
        except Exception as exc:
            if ws.session_id is None:
                raise  # no session to resume yet: a start-up failure, reported as one
            log.warning(
                "Discord: shard %s got a gateway frame it cannot read (%s); resuming the session",
                ws.shard_id or 0,
                _detail(exc),
            )
            await ws.close(code=4000)  # not 1000: a normal close would end the session
            raise ReconnectWebSocket(ws.shard_id, resume=True) from None

    ws.received_message = received_message  # type: ignore[method-assign]


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
