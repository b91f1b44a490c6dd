"""A small fake Discord (gateway websocket + REST API) on 127.0.0.1 for tests.

A real discord.py client logs in to it: ``GET /users/@me`` and
``/oauth2/applications/@me``, then the gateway handshake (HELLO, IDENTIFY,
READY, GUILD_CREATE, heartbeat ACKs), per shard. Tests then dispatch
``MESSAGE_CREATE`` / ``INTERACTION_CREATE`` and read back what the bot did:
message sends (with their ``allowed_mentions``), typing, thread creation,
interaction callbacks and follow-ups, and command syncs. Like Discord, it
echoes the bot's own messages back over the gateway. Tests wait on
:meth:`FakeDiscord.wait_for` (a condition notified on every record), never on
sleeps. :meth:`FakeDiscord.patched` points discord.py at it and restores.
The REST routes (sends, edits, deletes, interactions) are in ``discord_rest``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl
from aiohttp import WSMsgType, web

from tests.stubs import discord_payloads as p
from tests.stubs.discord_payloads import Json, snowflake
from tests.stubs.discord_rest import DROP, LOST, Call, DiscordRest

__all__ = ["DROP", "LOST", "Call", "FakeDiscord"]


@dataclass
class Session:
    ws: web.WebSocketResponse
    query: dict[str, str]
    shard: tuple[int, int] = (0, 1)
    seq: int = 0
    ready: bool = False
    session_id: str = ""


@dataclass
class FakeDiscord(DiscordRest):
    token: str = "fake-token"
    shard_count: int = 1  # what GET /gateway/bot recommends
    close_on_identify: int | None = None  # e.g. 4014 (privileged intent not enabled)
    echo_own_messages: bool = True
    # next sends' statuses: 0 = ok, DROP = hang up without answering, LOST = create the
    # message, then hang up (the client never learns it was created)
    send_failures: list[int] = field(default_factory=list)
    edit_failures: list[int] = field(default_factory=list)  # the same, for message edits
    callback_failures: list[int] = field(default_factory=list)  # DROP: interaction answers
    typing_status: int = 204  # e.g. 403 where the bot may not type

    calls: list[Call] = field(default_factory=list)
    sent: list[Json] = field(default_factory=list)  # POST /channels/{id}/messages bodies
    edits: list[Json] = field(default_factory=list)  # PATCH .../messages/{id} bodies (+ ids)
    deletes: list[str] = field(default_factory=list)  # ids of messages the bot deleted
    # Every change a user could see, in order: (clock(), message id, content; None = deleted).
    changes: list[tuple[float, str, str | None]] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)  # channel ids
    threads_created: list[Json] = field(default_factory=list)
    callbacks: list[Json] = field(default_factory=list)  # interaction callbacks
    followups: list[Json] = field(default_factory=list)  # webhook follow-ups and edits
    command_syncs: list[Call] = field(default_factory=list)
    identifies: list[Json] = field(default_factory=list)
    resumes: list[Json] = field(default_factory=list)  # op 6 RESUME payloads
    presences: list[Json] = field(default_factory=list)  # op 3 updates the bot sent
    unhandled: list[str] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bot_id = self.app_id = snowflake()
        self.guild_id = snowflake()
        self.channel_id = snowflake()
        self.other_channel_id = snowflake()
        self.dm_channel_id = snowflake()
        self.bot_role_id = snowflake()
        self.bot_user = p.user(self.bot_id, "guardbot", bot=True)
        self.admin = p.user(snowflake(), "ada")
        self.member = p.user(snowflake(), "bob")
        self.other_bot = p.user(snowflake(), "otherbot", bot=True)
        self.channels: dict[int, Json] = {
            self.channel_id: p.text_channel(self.channel_id, self.guild_id, "general"),
            self.other_channel_id: p.text_channel(self.other_channel_id, self.guild_id, "random"),
        }
        self.messages: dict[int, Json] = {}
        self.nonces: dict[tuple[str, str], tuple[float, int]] = {}  # (channel, nonce) -> sent
        self.edit_gates: list[asyncio.Event] = []  # hold the next edits until each is set
        self.clock: Callable[[], float] = lambda: asyncio.get_running_loop().time()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = self.gateway_url = ""

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/v10"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self.sessions:
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextmanager
    def patched(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway here; restore after."""
        route_base = discord.http.Route.BASE
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = route_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        """Until ``predicate()`` holds; re-checked after every recorded event."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(predicate)

    async def _record(self, bucket: list[Any], item: Any) -> None:
        bucket.append(item)
        async with self._changed:
            self._changed.notify_all()

    # -- driving the bot ---------------------------------------------------

    def guild_payload(self, shard: tuple[int, int]) -> Json | None:
        if (self.guild_id >> 22) % shard[1] != shard[0]:
            return None
        bot_member = p.member(self.bot_user, roles=[self.bot_role_id])
        return p.guild(
            self.guild_id,
            owner_id=int(self.admin["id"]),
            channels=[c for c in self.channels.values() if c["type"] == 0],
            members=[bot_member],
            threads=[c for c in self.channels.values() if c["type"] == 11],
            roles=[p.bot_role(self.bot_role_id, self.bot_id, "guardbot")],
        )

    async def close_gateway(self, code: int) -> None:
        """Discord ends every gateway session with ``code`` (e.g. 4004 after a token reset)."""
        for session in self.sessions:
            if not session.ws.closed:
                await session.ws.close(code=code, message=b"closed by the fake")

    async def dispatch(self, event: str, data: Json, *, guild_id: int | None = None) -> None:
        """Send one gateway event to the shard that owns ``guild_id`` (DMs: shard 0)."""
        for session in self.sessions:
            shard_id, count = session.shard
            owner = (guild_id >> 22) % count if guild_id is not None else 0
            if session.ready and not session.ws.closed and shard_id == owner:
                session.seq += 1
                await session.ws.send_json({"op": 0, "t": event, "s": session.seq, "d": data})
                return
        raise AssertionError(f"no connected shard for {event} (guild {guild_id})")

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` verbatim on the (first) live gateway session: broken JSON and all."""
        session = next(s for s in self.sessions if s.ready and not s.ws.closed)
        await session.ws.send_str(frame)

    async def post(
        self,
        content: str,
        *,
        author: Json | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        mention_bot: bool = False,
        mention_role: bool = False,
        reference: Json | None = None,
        extra: Json | None = None,
    ) -> Json:
        """A user posts a message; returns the MESSAGE_CREATE payload dispatched."""
        author = author or self.member
        mentions = [self.bot_user] if mention_bot else []
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        if mention_role:  # the bot's managed role, which users often pick by mistake
            content = f"<@&{self.bot_role_id}> {content}"
            extra = {**(extra or {}), "mention_roles": [str(self.bot_role_id)]}
        if dm:
            data = p.message(snowflake(), self.dm_channel_id, author, content, mentions=mentions)
            guild_id = None
        else:
            channel_id = channel_id or self.channel_id
            data = p.message(
                snowflake(),
                channel_id,
                author,
                content,
                guild_id=self.guild_id,
                mentions=mentions,
                reference=reference,
                extra=extra,
            )
            guild_id = self.guild_id
        self.messages[int(data["id"])] = data
        await self.dispatch("MESSAGE_CREATE", data, guild_id=guild_id)
        return data

    async def slash(
        self,
        subcommand: str,
        options: dict[str, str | int | bool] | None = None,
        *,
        invoker: Json | None = None,
        permissions: int = 0,
        dm: bool = False,
    ) -> Json:
        """A user runs ``/guardbot subcommand``; returns the interaction dispatched."""
        invoker = invoker or self.member
        channel = (
            p.dm_channel(self.dm_channel_id, invoker) if dm else self.channels[self.channel_id]
        )
        data = p.slash_command(
            interaction_id=snowflake(),
            application_id=self.app_id,
            token=f"itoken-{snowflake()}",
            command_id=snowflake(),
            name="guardbot",
            subcommand=subcommand,
            options=options or {},
            invoker=invoker,
            channel=channel,
            guild_id=None if dm else self.guild_id,
            permissions=permissions,
        )
        await self.dispatch("INTERACTION_CREATE", data, guild_id=None if dm else self.guild_id)
        return data

    async def open_thread(self, name: str, *, owner: Json | None = None) -> int:
        """A member starts a thread in #general; returns its id."""
        owner = owner or self.member
        thread_id = snowflake()
        data = p.thread(thread_id, self.guild_id, self.channel_id, int(owner["id"]), name)
        self.channels[thread_id] = data
        await self.dispatch(
            "THREAD_CREATE", {**data, "newly_created": True}, guild_id=self.guild_id
        )
        return thread_id

    def sent_to(self, channel_id: int | str) -> list[Json]:
        return [m for m in self.sent if m["channel_id"] == str(channel_id)]

    # -- gateway -----------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = Session(ws, dict(request.query))
        self.sessions.append(session)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41_250}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame["op"] == 1:
                await ws.send_json({"op": 11})
            elif frame["op"] == 2:
                await self._identify(session, frame["d"])
            elif frame["op"] == 3:
                await self._record(self.presences, frame["d"])
            elif frame["op"] == 6:
                await self._resume(session, frame["d"])
        return ws

    async def _resume(self, session: Session, data: Json) -> None:
        """RESUME of a known session on this new connection (no events are replayed)."""
        await self._record(self.resumes, data)
        old = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        if data.get("token") != self.token or old is None:
            await session.ws.send_json({"op": 9, "d": False})  # invalid session: identify
            return
        session.shard, session.session_id, session.seq = old.shard, old.session_id, old.seq
        old.ready = False
        session.ready = True
        session.seq += 1
        await session.ws.send_json({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}})

    async def _identify(self, session: Session, data: Json) -> None:
        await self._record(self.identifies, data)
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        if self.close_on_identify is not None:
            await session.ws.close(code=self.close_on_identify, message=b"Disallowed intent(s).")
            return
        shard = tuple(data.get("shard") or (0, 1))
        session.shard = (int(shard[0]), int(shard[1]))
        guild = self.guild_payload(session.shard)
        session.session_id = f"session-{snowflake()}"
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(self.guild_id), "unavailable": True}] if guild else [],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "shard": list(session.shard),
        }
        session.ready = True
        session.seq += 1
        await session.ws.send_json({"op": 0, "t": "READY", "s": session.seq, "d": ready})
        if guild is not None:
            await self.dispatch("GUILD_CREATE", guild, guild_id=self.guild_id)
