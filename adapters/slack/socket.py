"""Socket Mode with every envelope checked before slack-bolt reads it.

Over HTTP a malformed body is answered 400 with one log line
(:meth:`adapters.slack.app.SlackListeners.dispatch_http`). Over Socket Mode
slack-sdk parses each frame and hands it on as it is: a frame that is not
JSON, an envelope whose payload is not an object, or a payload of a shape
bolt cannot read each cost a traceback in the log, and the envelope is never
acked, so Slack sends it again. :class:`CheckedSocketModeClient` checks every
frame first, the envelope's own fields and then its payload with the same
:func:`~adapters.slack.events.malformed` the HTTP path uses; a malformed one
costs one log line (never its untrusted content), is acked when it names
itself (so it is not resent) and goes no further. :class:`SocketModeHandler`
is slack-bolt's handler over that client: it acks an envelope bolt still
fails to read, also with one line, and one bolt answers without success (a
404 when no listener takes it, a 500 when one failed; a WARNING for a 5xx),
which slack-sdk alone would leave unacked, for Slack to send three times more.
"""

from __future__ import annotations

import json
import logging
import time
from logging import Logger
from typing import Any

from slack_bolt.adapter.socket_mode.async_base_handler import AsyncBaseSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import json_kind, malformed

log = logging.getLogger("guardbot.slack")

# Envelopes that carry a request to ack; others (hello, disconnect) are the client's own.
REQUEST_TYPES = {"events_api", "slash_commands", "interactive"}
# Envelope types named in the log as they are; any other is untrusted and shown cut short.
KNOWN_TYPES = REQUEST_TYPES | {"hello", "disconnect"}


def type_name(kind: object) -> str:
    """An envelope's type for the log: a known one, else a short repr (one line, bounded)."""
    return kind if isinstance(kind, str) and kind in KNOWN_TYPES else repr(kind)[:40]


def envelope_problem(message: object) -> str | None:
    """Why ``message`` (one parsed frame) is not an envelope the app can read, or None."""
    if not isinstance(message, dict):
        return f"the frame is a JSON {json_kind(message)}, not an object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "an envelope without a type"
    if kind not in REQUEST_TYPES and "envelope_id" not in message:
        return None  # hello, disconnect: slack-sdk's to handle
    envelope_id = message.get("envelope_id")
    if not isinstance(envelope_id, str) or not envelope_id:
        return f"a {type_name(kind)} envelope without an envelope_id"
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return f"the payload of a {type_name(kind)} envelope is a JSON {json_kind(payload)}"
    problem = malformed(payload)
    return f"{type_name(kind)} payload: {problem}" if problem else None


class CheckedSocketModeClient(SocketModeClient):
    """slack-sdk's aiohttp Socket Mode client, taking only envelopes the app can read."""

    async def enqueue_message(self, message: str) -> None:
        try:
            parsed = json.loads(message)
        except ValueError:  # json.JSONDecodeError
            problem: str | None = "the frame is not JSON"
            parsed = None
        else:
            problem = envelope_problem(parsed)
        if problem is None:
            await super().enqueue_message(message)
            return
        log.warning("slack: skipped a malformed Socket Mode envelope: %s", problem)
        envelope_id = parsed.get("envelope_id") if isinstance(parsed, dict) else None
        if isinstance(envelope_id, str) and envelope_id:
            await self.ack(envelope_id)

    async def ack(self, envelope_id: str) -> None:
        try:
            await self.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id))
        except Exception as exc:  # the connection is going: Slack resends, and we skip it again
            log.warning("slack: could not ack a skipped envelope (%s)", type(exc).__name__)


class SocketModeHandler(AsyncBaseSocketModeHandler):
    """slack-bolt's Socket Mode handler over :class:`CheckedSocketModeClient`."""

    app: AsyncApp
    client: CheckedSocketModeClient

    def __init__(
        self, app: AsyncApp, *, app_token: str, web_client: AsyncWebClient, logger: Logger
    ) -> None:
        self.app = app
        self.app_token = app_token
        self.client = CheckedSocketModeClient(
            app_token=app_token, logger=logger, web_client=web_client
        )
        self.client.socket_mode_request_listeners.append(self.handle)

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        started = time.time()
        try:
            response = await run_async_bolt_app(self.app, req)
        except Exception as exc:  # a shape envelope_problem() misses (a numeric retry_reason)
            log.warning(
                "slack: skipped a %s envelope bolt cannot read (%s)",
                type_name(req.type),
                type(exc).__name__,
            )
            await self.client.ack(req.envelope_id)
            return
        if response.status == 200:
            await send_async_response(client, req, response, started)
            return
        # slack-sdk's sender acks only a 200: bolt's 404 (no listener, say an interaction
        # guardbot offers none for) or 500 (a listener failed) would go unacked, and Slack
        # resends the envelope to the same end. Acked bare: the body is bolt's error, no reply.
        if response.status >= 500:
            log.warning(
                "slack: bolt failed on a %s envelope (HTTP %d); acked, not answered",
                type_name(req.type),
                response.status,
            )
        else:
            log.debug(
                "slack: no listener for a %s envelope (HTTP %d)",
                type_name(req.type),
                response.status,
            )
        await self.client.ack(req.envelope_id)
