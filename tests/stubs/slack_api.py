"""A fake Slack Web API (and Socket Mode endpoint) for tests, on 127.0.0.1.

slack-sdk's real ``AsyncWebClient`` is pointed at it with ``base_url``. It
keeps channels' messages so that ``chat.update`` and ``conversations.replies``
behave, records every call (method, arguments, token, and the time on
``clock``) and every post to a ``response_url``, answers ``429`` +
``Retry-After`` or ``{"ok": false}`` errors on demand (or, with ``applied``,
acts on the call and then answers the error or drops the connection,
:data:`DROP`, as when Slack's answer is lost), holds a call until the
test releases it (:meth:`FakeSlack.hold`), serves Slack's streaming methods
(``chat.startStream`` / ``appendStream`` / ``stopStream``), logs every change
a user could see in ``changes``, and serves a Socket Mode WebSocket that sends envelopes and
records the acks. Tests wait on its records with :meth:`FakeSlack.wait_until`.
What Slack sends *to* the bot (signed requests) is in ``slack_payloads``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

# Re-exported: tests import the whole Slack kit from here.
from tests.stubs.slack_payloads import SIGNING_SECRET, event_callback, signed_headers, slash_command

T = TypeVar("T")
BOT_TOKEN = "xoxb-1-test-bot-token"
DROP = -1  # a fault's status: hang up instead of answering
APP_TOKEN = "xapp-1-test-app-token"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int = 200
    error: str | None = None  # the "error" it answered, if any
    at: float = 0.0  # FakeSlack.clock() when it arrived


@dataclass
class Fault:
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    applied: bool = False  # the call takes effect before the fault is answered


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    user: str = ""
    bot_id: str | None = None
    thread_ts: str | None = None
    history: list[str] = field(default_factory=list)  # earlier texts (chat.update)
    streaming: bool = False  # started by chat.startStream and not stopped yet


class FakeSlack:
    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.bot_user_id, self.bot_id, self.team_id = bot_user_id, bot_id, team_id
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (response_url key, body)
        self.users: dict[str, dict[str, Any]] = {}
        self.socket_acks: list[dict[str, Any]] = []
        self.socket_connected = asyncio.Event()
        self._faults: dict[str, list[Fault]] = {}
        self._holds: dict[str, list[asyncio.Event]] = {}
        # Every change a user could see, in order: (clock(), ts, text; None = deleted).
        self.changes: list[tuple[float, str, str | None]] = []
        self.clock: Callable[[], float] = lambda: asyncio.get_running_loop().time()
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._clock = 1_700_000_000.0
        self._runner: web.AppRunner | None = None
        self.base = ""

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base}/response/{key}"

    # -- test controls ----------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        applied: bool = False,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this fault.

        ``applied``: act on each call first (Slack did it; only its answer was
        lost). ``status=DROP`` closes the connection instead of answering.
        """
        if status == 429 and error is None:
            error = "ratelimited"
        self._faults.setdefault(method, []).extend(
            Fault(status, error, retry_after, applied) for _ in range(times)
        )

    def hold(self, method: str) -> asyncio.Event:
        """Hold the next call of ``method`` (recorded at once) until the event is set."""
        gate = asyncio.Event()
        self._holds.setdefault(method, []).append(gate)
        return gate

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "",
        bot_id: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Seed a message (as if posted earlier); returns its ts."""
        ts = self._next_ts()
        self.messages.append(Message(channel, ts, text, user, bot_id, thread_ts))
        return ts

    def next_ts(self) -> str:
        """A fresh ts for an incoming user message the test is about to send."""
        return self._next_ts()

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's (and seeded) messages in one thread, in order, as they read now."""
        return [
            m
            for m in self.messages
            if m.channel == channel and (m.thread_ts == thread_ts or m.ts == thread_ts)
        ]

    async def wait_until(self, predicate: Callable[[], T | None], within_s: float = 10.0) -> T:
        """The predicate's first truthy answer, waiting for the records to change."""
        async with asyncio.timeout(within_s), self._changed:
            while not (result := predicate()):
                await self._changed.wait()
            return result

    async def close_sockets(self) -> None:
        """Slack drops the Socket Mode connections (as on a token reset); clients reconnect."""
        self.socket_connected.clear()
        for ws in list(self._sockets):
            await ws.close()

    async def socket_send(self, envelope: dict[str, Any]) -> None:
        await self.socket_send_raw(json.dumps(envelope))

    async def socket_send_raw(self, text: str) -> None:
        """Send one text frame as is (a malformed envelope, say)."""
        await self.socket_connected.wait()
        await self._sockets[-1].send_str(text)

    # -- the Web API ------------------------------------------------------------

    def _next_ts(self) -> str:
        self._clock += 0.0001
        return f"{self._clock:.6f}"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.body_exists:
            raw = await request.read()
            if request.content_type == "application/json":
                args.update(json.loads(raw or b"{}"))
            else:
                args.update(dict(urllib.parse.parse_qsl(raw.decode())))
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        call = Call(method, args, token, at=self.clock())
        self.calls.append(call)
        try:
            holds = self._holds.get(method)
            if holds:
                gate = holds.pop(0)
                await self._notify()
                await gate.wait()
            faults = self._faults.get(method)
            if faults:
                fault = faults.pop(0)
                call.status, call.error = fault.status, fault.error
                if fault.applied:
                    self._answer(method, args)
                if fault.status == DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)  # never reaches the client
                headers = (
                    {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                )
                body = {"ok": False, "error": fault.error} if fault.error else {"ok": False}
                return web.json_response(body, status=fault.status, headers=headers)
            wanted = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != wanted:
                call.error = "invalid_auth" if token else "not_authed"
                return web.json_response({"ok": False, "error": call.error})
            result = self._answer(method, args)
            if not result.get("ok"):
                call.error = str(result.get("error"))
            return web.json_response(result)
        finally:
            await self._notify()

    def _find(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://test.slack.com/",
                "team": "Test",
                "user": "guardbot",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": self.base.replace("http://", "ws://") + "/socket"}
        if method == "chat.postMessage":
            ts = self._next_ts()
            thread_ts = args.get("thread_ts") or None
            msg = Message(
                channel, ts, str(args.get("text", "")), self.bot_user_id, self.bot_id, thread_ts
            )
            self.messages.append(msg)
            self.changes.append((self.clock(), ts, msg.text))
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": msg.text, "ts": ts},
            }
        if method.endswith("Stream"):
            return self._stream(method, channel, args)
        if method == "chat.update":
            found = self._find(channel, str(args.get("ts", "")))
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            self._change(found, str(args.get("markdown_text") or args.get("text") or ""))
            return {"ok": True, "channel": channel, "ts": found.ts, "text": found.text}
        if method == "chat.delete":
            found = self._find(channel, str(args.get("ts", "")))
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            self.messages.remove(found)
            self.changes.append((self.clock(), found.ts, None))
            return {"ok": True, "channel": channel, "ts": found.ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "conversations.replies":
            thread = self.thread(channel, str(args.get("ts", "")))
            limit = int(args.get("limit", 1000))
            return {
                "ok": True,
                "messages": [
                    {"ts": m.ts, "text": m.text, "user": m.user, "thread_ts": m.thread_ts or m.ts}
                    | ({"bot_id": m.bot_id} if m.bot_id else {})
                    for m in thread[:limit]
                ],
                "has_more": len(thread) > limit,
            }
        if method == "users.info":
            user = self.users.get(str(args.get("user", "")))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        return {"ok": False, "error": "unknown_method"}

    def _change(self, message: Message, text: str) -> None:
        message.history.append(message.text)
        message.text = text
        self.changes.append((self.clock(), message.ts, text))

    def _stream(self, method: str, channel: str, args: dict[str, Any]) -> dict[str, Any]:
        """chat.startStream / appendStream / stopStream, on the messages kept here."""
        text = str(args.get("markdown_text") or "")
        text += "".join(str(c.get("text", "")) for c in args.get("chunks") or [])
        if method == "chat.startStream":
            if not args.get("thread_ts"):
                return {"ok": False, "error": "invalid_arguments"}
            ts = self._next_ts()
            started = Message(
                channel, ts, "", self.bot_user_id, self.bot_id, str(args["thread_ts"]), [], True
            )
            self.messages.append(started)
            self._change(started, text)
            return {"ok": True, "channel": channel, "ts": ts}
        found = self._find(channel, str(args.get("ts", "")))
        if found is None:
            return {"ok": False, "error": "message_not_found"}
        if not found.streaming or method not in ("chat.appendStream", "chat.stopStream"):
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if text:
            self._change(found, found.text + text)
        found.streaming = method == "chat.appendStream"
        return {"ok": True, "channel": channel, "ts": found.ts}

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append((request.match_info["key"], await request.json()))
        await self._notify()
        return web.Response(text="ok")

    # -- Socket Mode --------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
        await ws.send_str(json.dumps(hello))
        self.socket_connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(msg.data))
                    await self._notify()
        finally:
            self._sockets.remove(ws)
        return ws


__all__ = [
    "APP_TOKEN",
    "BOT_TOKEN",
    "DROP",
    "SIGNING_SECRET",
    "FakeSlack",
    "event_callback",
    "signed_headers",
    "slash_command",
]
