"""Which Slack events the bot answers, and as what :class:`ChatRequest`.

Slack delivers one message up to three ways: an ``app_mention`` and a
``message`` event (different event ids) and, when an ack was late, retries of
either (same event id, ``X-Slack-Retry-Num``). The router answers each user
message at most once, keeps its hands off its own posts, edits and (unless
configured) other bots, and follows threads it started without a mention, even
after a restart (one ``conversations.replies`` look-up per thread, cached).

History is keyed by ``(channel_id, thread_id)``. In a channel every top-level
mention opens a thread (its ts names the conversation); a direct message
outside a thread is answered in the DM itself with ``thread_id = ""``, so the
whole DM is one conversation, as on Discord. A DM inside a thread keeps it.

Before any of that, :func:`malformed` checks the shape of a request body:
slack-bolt assumes Slack's shapes (``body["event"]["type"]``, a list of
authorizations, ...) and answers anything else with a 500 and a traceback.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import EventClaims
from adapters.slack.config import SlackConfig
from adapters.slack.text import from_slack, mentions
from middleware.types import ChatRequest

log = logging.getLogger("guardbot.slack")

_OBJECT = (dict, type(None))
_NAME_OR_OBJECT = (str, dict, type(None))
# The fields slack-bolt reads in any request or event, and the types it can read them as.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "type": (str, type(None)),
    "command": (str, type(None)),
    "callback_id": (str, type(None)),
    "event": _OBJECT,
    "team": _NAME_OR_OBJECT,
    "enterprise": _NAME_OR_OBJECT,
    "user": _NAME_OR_OBJECT,
    "channel": _NAME_OR_OBJECT,
    "view": _OBJECT,
    "message": _OBJECT,
    "previous_message": _OBJECT,
    "item": _OBJECT,
    "container": _OBJECT,
    "assistant_thread": _OBJECT,
    "function_data": _OBJECT,
}
_LISTS_OF_OBJECTS = ("authorizations", "response_urls", "actions")


def malformed(body: object) -> str | None:
    """Why ``body`` (a parsed request) is not a Slack request the app can read, or None."""
    if not isinstance(body, dict):
        return f"the body is a JSON {json_kind(body)}, not an object"
    problem = _bad_fields(body, "")
    if problem:
        return problem
    if "type" not in body and "command" not in body and "ssl_check" not in body:
        return "neither an event, a slash command nor an interaction"
    if body.get("type") == "url_verification" and not isinstance(body.get("challenge"), str):
        return "a url_verification without a challenge"
    if body.get("type") == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict):
            return "an event_callback without an event object"
        if not isinstance(event.get("type"), str):
            return "an event without a type"
        return _bad_fields(event, "event.")
    return None


def _bad_fields(body: Mapping[str, Any], where: str) -> str | None:
    for name, types in _FIELD_TYPES.items():
        if not isinstance(body.get(name), types):
            return f"{where}{name} is a JSON {json_kind(body[name])}"
    for name in _LISTS_OF_OBJECTS:
        value = body.get(name)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, dict) for v in value)
        ):
            return f"{where}{name} is not a list of objects"
    return None


def json_kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# A user's message; file shares and "also send to channel" replies still carry text.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


class Recent:
    """A bounded, insertion-ordered memory of keys (oldest forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[object, bool] = OrderedDict()

    def add(self, key: object, value: bool = True) -> bool:
        """Remember ``key``; False when it was already known (a duplicate)."""
        if key in self._items:
            self._items.move_to_end(key)
            return False
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return True

    def get(self, key: object) -> bool | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message to answer: the request, and where in Slack the answer goes."""

    request: ChatRequest
    channel: str
    thread_ts: str  # "" = post in the channel itself (a DM), not in a thread
    starts_thread: bool  # the reply opens a thread under a top-level message
    team_id: str = ""  # the asker's workspace: Slack's streaming methods need it in channels


@dataclass(frozen=True, slots=True)
class NotAllowed:
    """A mention in a channel outside the allow-list; the user is told privately."""

    channel: str
    user: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the bot is in this workspace (from auth.test)."""

    user_id: str
    bot_id: str


class EventRouter:
    def __init__(
        self, config: SlackConfig, client: AsyncWebClient, me: Identity, claims: EventClaims
    ) -> None:
        self.config = config
        self.client = client
        self.me = me
        self.claims = claims  # shared by every instance on the log; the Recents are this one's
        self.events = Recent()
        self.messages = Recent()
        self.threads = Recent()  # (channel, thread_ts) -> the bot started it

    async def first_delivery(self, body: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
        """False for an event already taken, here or by another instance (same event_id):
        a retry of a late ack, or a copy sent to a second connection or instance."""
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            return True
        if self.events.add(event_id) and await self.claims.claim_event("slack", event_id):
            return True
        retry = _header(headers, "x-slack-retry-num")
        reason = _header(headers, "x-slack-retry-reason")
        log.info("slack: ignoring event %s, already taken (retry %s, %s)", event_id, retry, reason)
        return False

    def remember_thread(self, channel: str, thread_ts: str) -> None:
        self.threads.add((channel, thread_ts), True)

    async def route(
        self, event: Mapping[str, Any], *, mention: bool
    ) -> Incoming | NotAllowed | None:
        """What to do with one event (None: ignore it)."""
        channel, ts = event.get("channel"), event.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
            return None
        subtype = event.get("subtype")
        if not isinstance(subtype, str | None):
            return None  # not a shape Slack sends (and a list would not even hash)
        if "edited" in event or (subtype not in ANSWERED_SUBTYPES and subtype != "bot_message"):
            return None  # edits, deletions, joins, topic changes, ...
        user = event.get("user") if isinstance(event.get("user"), str) else ""
        if user == self.me.user_id or event.get("bot_id") == self.me.bot_id:
            return None
        if (event.get("bot_id") or subtype == "bot_message") and not self.config.answers_bots(
            channel
        ):
            return None
        text = event.get("text")
        raw_thread = event.get("thread_ts")
        thread_ts = raw_thread if isinstance(raw_thread, str) and raw_thread else None
        direct = event.get("channel_type") == "im" or (
            "channel_type" not in event and channel.startswith("D")
        )
        if direct:
            if not self.config.dms:
                return None
        elif not self.config.allows(channel):
            return NotAllowed(channel, user) if mention and user else None
        elif not mention:
            if mentions(text, self.me.user_id):
                return None  # the app_mention event for this message answers it
            if thread_ts and thread_ts != ts:
                if not self.config.follows_threads(channel):
                    return None
                if not await self.bot_started(channel, thread_ts):
                    return None
            elif not self.config.channel(channel).reply_all:
                return None
        if not self.messages.add((channel, ts)) or not await self.claims.claim_event(
            "slack", f"message {channel} {ts}"
        ):
            return None  # the same message, already taken via another event (maybe elsewhere)
        # A top-level DM: answer in the DM, and the DM is the conversation.
        reply_in = thread_ts or ("" if direct else ts)
        request = ChatRequest(
            platform="slack",
            channel_id=channel,
            thread_id=reply_in,
            user_id=user or str(event.get("bot_id") or ""),
            message_id=ts,
            text=from_slack(text, self.me.user_id),
        )
        team = event.get("user_team") or event.get("team")
        return Incoming(
            request,
            channel,
            reply_in,
            starts_thread=thread_ts is None and not direct,
            team_id=team if isinstance(team, str) else "",
        )

    async def bot_started(self, channel: str, thread_ts: str) -> bool:
        """Whether the bot wrote the first reply of this thread (cached either way)."""
        known = self.threads.get((channel, thread_ts))
        if known is not None:
            return known
        try:
            page = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=2)
        except SlackApiError as exc:
            log.warning("slack: cannot read thread %s in %s: %s", thread_ts, channel, _why(exc))
            return False
        except Exception as exc:  # a network failure just means "not now"
            log.warning("slack: cannot read thread %s in %s: %r", thread_ts, channel, exc)
            return False
        messages = page.get("messages") or []
        first_reply = messages[1] if len(messages) > 1 and isinstance(messages[1], dict) else {}
        started = first_reply.get("user") == self.me.user_id or (
            bool(first_reply.get("bot_id")) and first_reply.get("bot_id") == self.me.bot_id
        )
        # Who replied first never changes, so the answer can be kept for good.
        self.threads.add((channel, thread_ts), started)
        return started


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return str(value) if value is not None else None


def _why(exc: SlackApiError) -> str:
    response = exc.response
    error = response.get("error") if response is not None else None
    status = getattr(response, "status_code", None)
    return str(error or f"HTTP {status}")
