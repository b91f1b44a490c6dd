"""The Slack adapter as a service `guardbot run` starts and stops.

It reads the secrets from the environment and checks them before serving:
the bot token with ``auth.test``, the app token with
``apps.connections.open`` (Socket Mode), so a missing or wrong secret is one
clear :class:`AdapterConfigError` at start, not a bot that silently never
answers. HTTP mode serves the Events API on aiohttp; Socket Mode uses
slack-bolt's handler over a client that checks every envelope
(:mod:`adapters.slack.socket`). Either way the Web API client points at
``[slack] api_url``. slack-sdk's Socket Mode client reconnects forever, even
when Slack rejects the app token (revoked, app uninstalled); that can never
heal, so the service sets ``failed`` (reason in ``failure``) and `guardbot run`
exits instead of serving nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import AdapterConfigError
from adapters.slack.app import SlackHandler, SlackListeners
from adapters.slack.config import SlackConfig
from adapters.slack.events import Identity
from adapters.slack.post import describe, retry_handlers
from adapters.slack.socket import SocketModeHandler

log = logging.getLogger("guardbot.slack")

BOT_TOKEN = "SLACK_BOT_TOKEN"
APP_TOKEN = "SLACK_APP_TOKEN"
SIGNING_SECRET = "SLACK_SIGNING_SECRET"
SOCKET_CONNECT_TIMEOUT_S = 30.0
# apps.connections.open errors that retrying cannot fix.
FATAL_TOKEN_ERRORS = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "not_allowed_token_type",
}


@dataclass(frozen=True)
class SlackSecrets:
    mode: Literal["socket", "http"]
    bot_token: str = field(repr=False)
    app_token: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)


def slack_requested(config: SlackConfig, env: Mapping[str, str] = os.environ) -> bool:
    """Whether `guardbot run` should start Slack: enabled and any Slack secret set."""
    return config.enabled and any(
        env.get(k, "").strip() for k in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET)
    )


def _prefix(token: str) -> str:
    """What kind of token this looks like, without revealing it."""
    head = token.split("-", 1)[0]
    return f"{head}-" if "-" in token and len(head) <= 5 else "something else"


def read_secrets(config: SlackConfig, env: Mapping[str, str] = os.environ) -> SlackSecrets:
    bot = env.get(BOT_TOKEN, "").strip()
    app = env.get(APP_TOKEN, "").strip()
    secret = env.get(SIGNING_SECRET, "").strip()
    if not bot:
        raise AdapterConfigError(
            f"Slack: {BOT_TOKEN} is not set. Copy the Bot User OAuth Token (xoxb-...) from "
            "your app's OAuth & Permissions page."
        )
    if not bot.startswith("xoxb-"):
        raise AdapterConfigError(
            f"Slack: {BOT_TOKEN} must be a bot token starting with xoxb- (it starts with "
            f"{_prefix(bot)}). Use the Bot User OAuth Token from OAuth & Permissions."
        )
    mode = config.mode
    if mode == "auto":
        if not app and not secret:
            raise AdapterConfigError(
                f"Slack: set {APP_TOKEN} (Socket Mode) or {SIGNING_SECRET} (HTTP Events API) "
                f"next to {BOT_TOKEN}."
            )
        mode = "socket" if app else "http"
    if mode == "socket":
        if not app:
            raise AdapterConfigError(
                f'Slack: [slack] mode = "socket" needs {APP_TOKEN}, an app-level token '
                "(xapp-...) with the connections:write scope (Basic Information > "
                "App-Level Tokens)."
            )
        if not app.startswith("xapp-"):
            raise AdapterConfigError(
                f"Slack: {APP_TOKEN} must be an app-level token starting with xapp- (it starts "
                f"with {_prefix(app)})."
            )
        return SlackSecrets("socket", bot, app_token=app)
    if not secret:
        raise AdapterConfigError(
            f'Slack: [slack] mode = "http" needs {SIGNING_SECRET} (Basic Information > '
            "App Credentials > Signing Secret)."
        )
    if secret.startswith(("xox", "xapp-")):
        raise AdapterConfigError(
            f"Slack: {SIGNING_SECRET} holds a token; it must be the Signing Secret from "
            "Basic Information > App Credentials."
        )
    return SlackSecrets("http", bot, signing_secret=secret)


class SlackService:
    """``from_env(...)``, then ``await start()``; ``await stop()`` finishes in-flight replies."""

    def __init__(self, config: SlackConfig, handler: SlackHandler, secrets: SlackSecrets) -> None:
        self.config = config
        self.handler = handler
        self.secrets = secrets
        self.mode = secrets.mode
        self.name = "Slack (Socket Mode)" if self.mode == "socket" else "Slack (Events API)"
        self.client = AsyncWebClient(
            token=secrets.bot_token,
            base_url=config.api_url,
            retry_handlers=retry_handlers(config.api_retries),
            logger=logging.getLogger("guardbot.slack.api"),
        )
        self.identity: Identity | None = None
        self.listeners: SlackListeners | None = None
        self.url = ""  # HTTP mode: the Request URL actually served
        self._runner: web.AppRunner | None = None
        self._socket: SocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._accepting = False
        self.failed = asyncio.Event()  # set when Socket Mode can never reconnect
        self.failure = ""  # why, for the operator

    @classmethod
    def from_env(
        cls, config: SlackConfig, handler: SlackHandler, env: Mapping[str, str] = os.environ
    ) -> SlackService:
        return cls(config, handler, read_secrets(config, env))

    async def __aenter__(self) -> SlackService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # One pooled session for every Web API call: no TLS handshake per post.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.client.timeout)
        )
        self.client.session = self._session
        try:
            await self._start()
        except BaseException:
            await self._close_session()
            raise

    async def _start(self) -> None:
        self.identity = await self._whoami()
        self.listeners = SlackListeners(
            self.config,
            self.handler,
            self.client,
            self.identity,
            signing_secret=self.secrets.signing_secret,
            socket_mode=self.mode == "socket",
        )
        self._accepting = True
        if self.mode == "http":
            await self._serve_http()
            self.name = f"Slack (Events API at {self.url})"
            log.info("slack: serving the Events API at %s", self.url)
        else:
            await self._connect_socket()
            log.info("slack: connected in Socket Mode")

    async def stop(self) -> None:
        """Stop taking events (HTTP answers 503, so Slack retries), then drain."""
        self._accepting = False
        if self._socket is not None:
            socket, self._socket = self._socket, None
            await socket.close_async()  # type: ignore[no-untyped-call]
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self.listeners is not None:
            await self.listeners.drain(self.config.shutdown_timeout_s)
        await self._close_session()

    async def _close_session(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self.client.session = None
            await session.close()

    async def _whoami(self) -> Identity:
        api = self.config.api_url
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise AdapterConfigError(
                f"Slack rejected {BOT_TOKEN} ({describe('auth.test', exc)}) at {api}. "
                "Check the token, and that the app is installed in the workspace."
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise AdapterConfigError(
                f"Slack: cannot reach the Web API at {api} ({type(exc).__name__}). "
                "Check [slack] api_url, the network and any HTTPS_PROXY."
            ) from None
        user_id, bot_id = auth.get("user_id"), auth.get("bot_id")
        if not user_id or not bot_id:
            raise AdapterConfigError(f"Slack: {BOT_TOKEN} does not belong to a bot user.")
        return Identity(str(user_id), str(bot_id))

    async def _serve_http(self) -> None:
        app = web.Application()
        app.router.add_post(self.config.path, self._on_http)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"Slack: cannot listen on {self.config.host}:{self.config.port} "
                f"({exc.strerror or exc}). Change [slack] port."
            ) from None
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}{self.config.path}"

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        if not self._accepting or self.listeners is None:
            return web.Response(status=503, text="shutting down")
        response = await self.listeners.dispatch_http(
            await request.read(),
            request.headers,
            query=request.query_string,
            peer=request.remote or "?",
        )
        return await to_aiohttp_response(response)

    async def _connect_socket(self) -> None:
        assert self.listeners is not None
        handler = SocketModeHandler(
            self.listeners.app,
            app_token=self.secrets.app_token,
            web_client=self.client,
            logger=logging.getLogger("guardbot.slack.socket"),
        )
        self._socket = handler
        try:
            # Asked here (not inside connect) because connect retries a bad token forever.
            handler.client.wss_uri = await handler.client.issue_new_wss_url()
            async with asyncio.timeout(SOCKET_CONNECT_TIMEOUT_S):
                await handler.connect_async()  # type: ignore[no-untyped-call]
        except SlackApiError as exc:
            problem = (
                f"Slack rejected {APP_TOKEN} ({describe('apps.connections.open', exc)}). "
                "It must be an app-level token with connections:write, and Socket Mode "
                "must be on in the app settings."
            )
        except TimeoutError:
            problem = f"Slack: no Socket Mode connection within {SOCKET_CONNECT_TIMEOUT_S:g} s."
        except (aiohttp.ClientError, OSError) as exc:
            problem = f"Slack: cannot open Socket Mode ({type(exc).__name__}: {exc})."
        else:
            self._watch_reconnects(handler)
            return
        self._socket = None
        await handler.close_async()  # type: ignore[no-untyped-call]
        raise AdapterConfigError(problem)

    def _watch_reconnects(self, handler: SocketModeHandler) -> None:
        """Notice when a reconnect is refused for good (slack-sdk would retry forever)."""
        client = handler.client
        issue = client.issue_new_wss_url

        async def issue_or_fail() -> str:
            try:
                return await issue()
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error in FATAL_TOKEN_ERRORS and self._accepting and not self.failed.is_set():
                    self._accepting = False
                    self.failure = (
                        f"Slack rejected {APP_TOKEN} while reconnecting Socket Mode "
                        f"({describe('apps.connections.open', exc)}); set a valid app-level token"
                    )
                    log.error("slack: %s", self.failure)
                    self.failed.set()
                raise

        client.issue_new_wss_url = issue_or_fail  # type: ignore[method-assign]
