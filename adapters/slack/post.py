"""Posting to Slack: the placeholder, the messages that replace it, their errors.

Every Web API call goes through a client whose retry handlers wait out a 429
for as long as ``Retry-After`` says and retry 5xx and dropped connections,
except Slack's streaming methods: a 5xx or a lost answer may follow a call
Slack applied, and a repeated ``chat.appendStream`` would show its text twice
(a repeated ``chat.startStream``, a second reply), so those are retried only
after a 429 and :func:`unclear` tells the caller to repair instead. This
module only posts, replaces and removes messages and turns what still failed
into the one-line delivery error that is stored with the decision.
What a reply's messages say, and when, is :mod:`adapters.slack.stream`'s job.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("guardbot.slack")

# chat.update cannot replace the placeholder (deleted, or too old): post anew.
_GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}
CRASH_REPLY = "Sorry, something went wrong while answering. Please try again."
SHUTDOWN_REPLY = "Sorry, I was restarted before I could answer. Please ask again."


# Not safe to repeat: Slack may have applied a call whose answer was a 5xx or lost.
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})


def _repeatable(request: HttpRequest) -> bool:
    method = request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return method not in STREAM_METHODS


class AnyServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """Retries every 5xx (with backoff), not only 500/503: gateways in front answer 502/504."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code >= 500 and _repeatable(request)


class RepeatableConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Retries a dropped connection, but never a streaming call (it may have been applied)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return _repeatable(request) and await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


def retry_handlers(retries: int) -> list[AsyncRetryHandler]:
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=retries),
        AnyServerErrorRetryHandler(max_retry_count=retries),
        RepeatableConnectionErrorRetryHandler(max_retry_count=retries),
    ]


def unclear(exc: BaseException) -> bool:
    """Whether Slack may have applied a call that failed: no answer (a drop, a timeout) or a 5xx.

    An answer of 4xx or 200 with an ``error`` code (a 429 too) means it was not applied.
    """
    if isinstance(exc, SlackApiError) and exc.response is not None:
        return int(exc.response.status_code) >= 500
    return True


def describe(method: str, exc: BaseException) -> str:
    """A short, secret-free reason for the delivery record and the log."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = response.get("error") if response is not None else None
        status = getattr(response, "status_code", None)
        if status == 429:
            return f"slack {method}: rate limited (429), retries exhausted"
        return f"slack {method}: {error or f'HTTP {status}'}"
    return f"slack {method}: {type(exc).__name__}: {exc}".rstrip(": ")


class DeliveryError(Exception):
    """A reply (or part of one) could not be posted; the message is for the log."""


class Poster:
    def __init__(self, client: AsyncWebClient, *, limit: int, streams: bool = True) -> None:
        self.client = client
        self.limit = limit
        # Whether to try chat.*Stream; turned off for good once Slack refuses them.
        self.streams = streams

    async def post(self, channel: str, thread_ts: str, text: str) -> str:
        """Post ``text`` as-is (already mrkdwn) in the thread ("": the channel); returns its ts."""
        try:
            response = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts or None, text=text
            )
        except Exception as exc:
            raise DeliveryError(describe("chat.postMessage", exc)) from exc
        return str(response.get("ts") or "")

    async def placeholder(self, channel: str, thread_ts: str, text: str) -> str | None:
        """The progress message; None when it could not be posted (the reply is posted anew)."""
        if not text:
            return None
        try:
            return await self.post(channel, thread_ts, text) or None
        except DeliveryError as exc:
            log.warning("slack: placeholder not posted: %s", exc)
            return None

    async def replace(self, channel: str, thread_ts: str, ts: str, text: str) -> str:
        """Make message ``ts`` read ``text``; returns its ts (a new one if it was gone)."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text)
        except SlackApiError as exc:
            if exc.response is None or exc.response.get("error") not in _GONE:
                raise DeliveryError(describe("chat.update", exc)) from exc
            return await self.post(channel, thread_ts, text)
        except Exception as exc:
            raise DeliveryError(describe("chat.update", exc)) from exc
        return ts

    async def remove(self, channel: str, ts: str) -> None:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as exc:
            if exc.response is None or exc.response.get("error") != "message_not_found":
                raise DeliveryError(describe("chat.delete", exc)) from exc
        except Exception as exc:
            raise DeliveryError(describe("chat.delete", exc)) from exc

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:
            log.warning("slack: %s", describe("chat.postEphemeral", exc))
