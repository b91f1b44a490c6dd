"""The REST half of the fake Discord: the routes a discord.py client calls.

Split from ``discord_server`` (the gateway and the test controls) so each stays
readable. Every request is recorded; message sends, edits and deletes also go
into ``changes``, the order in which a user would have seen them, and can be
made to fail (``send_failures`` / ``edit_failures``: a status, 429 included,
:data:`DROP`, or :data:`LOST`; ``callback_failures``: :data:`DROP`) or held
(``edit_gates``) so a test can act while one is pending. Like Discord, a send
with ``enforce_nonce`` whose nonce created a message in that channel within the
last few minutes creates nothing: the answer is the message created then (or
404 if it was deleted since).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.stubs import discord_payloads as p
from tests.stubs.discord_payloads import Json, snowflake

DROP = -1  # a send_failures entry: the connection drops instead of an answer
LOST = -2  # a send_failures entry: the message is created, then the connection drops
NONCE_WINDOW_S = 300.0  # how long Discord remembers a nonce ("a few minutes")


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Discord's exact content type (discord.py compares it verbatim)."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)


@dataclass
class Call:
    """One REST request the client made."""

    method: str
    path: str
    body: Any
    query: dict[str, str]


class DiscordRest:
    """The REST routes; mixed into ``FakeDiscord``, which holds the state they use."""

    token: str
    echo_own_messages: bool
    send_failures: list[int]
    edit_failures: list[int]
    callback_failures: list[int]
    typing_status: int
    calls: list[Call]
    sent: list[Json]
    edits: list[Json]
    deletes: list[str]
    changes: list[tuple[float, str, str | None]]
    clock: Callable[[], float]
    edit_gates: list[asyncio.Event]
    typing: list[str]
    threads_created: list[Json]
    callbacks: list[Json]
    followups: list[Json]
    command_syncs: list[Call]
    unhandled: list[str]
    messages: dict[int, Json]
    nonces: dict[tuple[str, str], tuple[float, int]]
    channels: dict[int, Json]
    bot_user: Json
    admin: Json
    bot_id: int
    app_id: int
    guild_id: int
    channel_id: int
    gateway_url: str
    shard_count: int

    async def _record(self, bucket: list[Any], item: Any) -> None:
        raise NotImplementedError

    async def dispatch(self, event: str, data: Json, *, guild_id: int | None = None) -> None:
        raise NotImplementedError

    # -- REST --------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = await request.json() if request.can_read_body else {}
        call = Call(request.method, path, body, dict(request.query))
        await self._record(self.calls, call)
        parts = path.strip("/").split("/")
        needs_auth = parts[0] not in ("interactions", "webhooks")
        if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        route = (request.method, *parts)
        match route:
            case ("GET", "users", "@me"):
                return _json(self.bot_user)
            case ("GET", "oauth2", "applications", "@me"):
                return _json(self._app_info())
            case ("GET", "gateway", "bot"):
                return _json(self._gateway_bot())
            case ("POST", "channels", channel_id, "typing"):
                await self._record(self.typing, channel_id)
                if self.typing_status != 204:
                    error = {"message": "Missing Permissions", "code": 50013}
                    return _json(error, status=self.typing_status)
                return web.Response(status=204)
            case ("POST", "channels", channel_id, "messages"):
                return await self._send(channel_id, body, request)
            case ("PATCH", "channels", channel_id, "messages", message_id):
                return await self._edit(channel_id, message_id, body)
            case ("DELETE", "channels", _, "messages", message_id):
                return await self._delete(message_id)
            case ("GET", "channels", _, "messages", message_id):
                found = self.messages.get(int(message_id))
                if found is None:
                    return _json({"message": "Unknown Message", "code": 10008}, status=404)
                return _json(found)
            case ("POST", "channels", channel_id, "messages", message_id, "threads"):
                return await self._start_thread(int(channel_id), int(message_id), body)
            case ("POST", "interactions", interaction_id, _, "callback"):
                if self.callback_failures and self.callback_failures.pop(0) == DROP:
                    await self._record(self.calls, Call("DROPPED", path, body, {}))
                    return self._hang_up(request)
                return await self._callback(interaction_id, body)
            case ("POST", "webhooks", _, _):
                await self._record(self.followups, {"kind": "followup", **body})
                return _json(self._bot_message(self.channel_id, body))
            case ("PATCH", "webhooks", _, _, "messages", _):
                await self._record(self.followups, {"kind": "edit", **body})
                return _json(self._bot_message(self.channel_id, body))
            case ("PUT", "applications", _, "commands") | (
                "PUT",
                "applications",
                _,
                "guilds",
                _,
                "commands",
            ):
                await self._record(self.command_syncs, call)
                return _json([self._command(c, parts) for c in body])
        await self._record(self.unhandled, f"{request.method} {path}")
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _app_info(self) -> Json:
        return {
            "id": str(self.app_id),
            "name": "guardbot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.admin,
            "verify_key": "0" * 64,
            "flags": 0,
        }

    def _gateway_bot(self) -> Json:
        return {
            "url": self.gateway_url,
            "shards": self.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 0,
                "max_concurrency": 1,
            },
        }

    async def _send(self, channel_id: str, body: Json, request: web.Request) -> web.Response:
        status = self.send_failures.pop(0) if self.send_failures else 0
        if status == DROP:
            await self._record(self.calls, Call("DROPPED", f"/channels/{channel_id}", body, {}))
            return self._hang_up(request)
        if status not in (0, LOST):
            await self._record(self.calls, Call("FAILED", f"/channels/{channel_id}", body, {}))
            if status == 429:
                headers = {"Via": "1.1 google", "X-RateLimit-Scope": "user"}
                limited = {"message": "You are being rate limited.", "retry_after": 0.01}
                return _json({**limited, "global": False}, status=429, headers=headers)
            error = {"message": "Missing Permissions", "code": 50013}
            return _json(error, status=status)
        if (repeated := await self._repeated_nonce(channel_id, body)) is not None:
            return repeated
        sent = self._bot_message(int(channel_id), body)
        self.messages[int(sent["id"])] = sent
        if body.get("nonce") is not None:
            self.nonces[(channel_id, str(body["nonce"]))] = (self.clock(), int(sent["id"]))
        self.changes.append((self.clock(), str(sent["id"]), sent["content"]))
        await self._record(self.sent, {"channel_id": channel_id, "id": sent["id"], **body})
        if self.echo_own_messages:
            guild_id = self.guild_id if "guild_id" in sent else None
            await self.dispatch("MESSAGE_CREATE", sent, guild_id=guild_id)
        if status == LOST:
            await self._record(self.calls, Call("LOST", f"/channels/{channel_id}", body, {}))
            return self._hang_up(request)
        return _json(sent)

    async def _repeated_nonce(self, channel_id: str, body: Json) -> web.Response | None:
        """Discord's answer to a nonce it has seen lately (with ``enforce_nonce``), or None."""
        nonce = body.get("nonce")
        if nonce is None or not body.get("enforce_nonce"):
            return None
        seen = self.nonces.get((channel_id, str(nonce)))
        if seen is None or self.clock() - seen[0] > NONCE_WINDOW_S:
            return None
        await self._record(self.calls, Call("REPEATED", f"/channels/{channel_id}", body, {}))
        found = self.messages.get(seen[1])
        if found is None:  # created, then deleted: Discord will not create it again
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        return _json(found)

    @staticmethod
    def _hang_up(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

    async def _edit(self, channel_id: str, message_id: str, body: Json) -> web.Response:
        if self.edit_gates:
            gate = self.edit_gates.pop(0)
            await self._record(self.calls, Call("HELD", f"/messages/{message_id}", body, {}))
            await gate.wait()
        status = self.edit_failures.pop(0) if self.edit_failures else 0
        found = self.messages.get(int(message_id))
        if status or found is None:
            await self._record(self.calls, Call("FAILED", f"/messages/{message_id}", body, {}))
            if status == 429:
                limited = {"message": "You are being rate limited.", "retry_after": 0.01}
                headers = {"Via": "1.1 google", "X-RateLimit-Scope": "user"}
                return _json({**limited, "global": False}, status=429, headers=headers)
            if found is None:
                return _json({"message": "Unknown Message", "code": 10008}, status=404)
            return _json({"message": "Missing Permissions", "code": 50013}, status=status)
        if "content" in body:
            found["content"] = body["content"]
            self.changes.append((self.clock(), message_id, found["content"]))
        await self._record(self.edits, {"channel_id": channel_id, "id": message_id, **body})
        return _json(found)

    async def _delete(self, message_id: str) -> web.Response:
        if self.messages.pop(int(message_id), None) is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        self.changes.append((self.clock(), message_id, None))
        await self._record(self.deletes, message_id)
        return web.Response(status=204)

    def _bot_message(self, channel_id: int, body: Json) -> Json:
        in_guild = channel_id in self.channels
        ref = body.get("message_reference")
        referenced = self.messages.get(int(ref["message_id"])) if ref else None
        return p.message(
            snowflake(),
            channel_id,
            self.bot_user,
            body.get("content") or "",
            guild_id=self.guild_id if in_guild else None,
            reference=referenced,
            extra={"flags": body.get("flags", 0), "nonce": body.get("nonce")},
        )

    async def _start_thread(self, channel_id: int, message_id: int, body: Json) -> web.Response:
        data = p.thread(message_id, self.guild_id, channel_id, self.bot_id, body["name"])
        self.channels[message_id] = data
        await self._record(self.threads_created, data)
        await self.dispatch(
            "THREAD_CREATE", {**data, "newly_created": True}, guild_id=self.guild_id
        )
        return _json(data, status=201)

    async def _callback(self, interaction_id: str, body: Json) -> web.Response:
        await self._record(self.callbacks, {"interaction_id": interaction_id, **body})
        flags = (body.get("data") or {}).get("flags", 0)
        result: Json = {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_loading": body["type"] == 5,
                "response_message_ephemeral": bool(flags & 64),
            },
            "resource": {"type": body["type"]},
        }
        if body["type"] == 4:
            result["resource"]["message"] = self._bot_message(self.channel_id, body["data"])
        return _json(result)

    def _command(self, command: Json, parts: list[str]) -> Json:
        guild = {"guild_id": parts[3]} if "guilds" in parts else {}
        return {
            "id": str(snowflake()),
            "application_id": str(self.app_id),
            "version": str(snowflake()),
            "dm_permission": True,
            "nsfw": False,
            **guild,
            **command,
        }
