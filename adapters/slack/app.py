"""The slack-bolt app: listeners that ack at once and answer in owned tasks.

Slack wants an HTTP 200 within 3 seconds, and a model may take longer, so
every listener only checks for a retry and starts a task: the placeholder and
the pipeline run together after the ack, the reply replaces the placeholder
(chunk by chunk when it streams, see :mod:`adapters.slack.stream`), and the
delivery is recorded with the decision. The tasks belong to this
object, so stopping can let them finish (or tell the user they were cut off).
Every message received leaves a decision: one still waiting for a slot
(``max_in_flight``, see :mod:`adapters.slots`) when the stop begins is put on
record as not answered.

An HTTP request reaches bolt only after :meth:`SlackListeners.dispatch_http`
checked, in this order, its signature (401), its encoding and JSON (400) and
its shape (400, see :func:`adapters.slack.events.malformed`): bolt itself
parses the body before checking the signature and answers a body it cannot
read with a 500 and a traceback, so anyone could fill the log. A rejected
request costs one log line, without its (untrusted) body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import (
    build_normalized_headers,
    extract_content_type,
    parse_body,
)
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import EventClaims, MessageHandler
from adapters.live import CUT_OFF_NOTE, LiveReply
from adapters.slack.config import SlackConfig
from adapters.slack.events import EventRouter, Identity, Incoming, NotAllowed, malformed
from adapters.slack.post import CRASH_REPLY, SHUTDOWN_REPLY, Poster, describe
from adapters.slack.stream import SlackMessages
from adapters.slack.text import from_slack, slack_messages
from adapters.slots import NOT_ANSWERED, NotAdmitted, Slots
from middleware.types import ChatRequest, Decision

log = logging.getLogger("guardbot.slack")

ADMIN_ACK_BUDGET_S = 2.0  # answer within the ack when we can; Slack allows 3 s in all
CUT_OFF_BUDGET_S = 2.0  # after shutdown_timeout_s: ending a cut-off reply, and its record
NOT_ALLOWED_NOTICE = "I'm not enabled in this channel. Ask an admin, or send me a direct message."
COMMAND_FAILED = "Sorry, that command failed. The error is in the bot's log."


class SlackHandler(MessageHandler, EventClaims, Protocol):
    """The application as Slack needs it: answers, and event claims shared by instances."""


@dataclass
class _Progress:
    """How far one answer got, so a cut-off answer can be tidied up."""

    view: LiveReply | None = None
    messages: SlackMessages | None = None  # the view's surface
    admitted: bool = False  # given a slot: from then on the handler records a cut-off
    turned_away: bool = False  # the stop came first: recorded as not answered
    decision: Decision | None = None
    delivered: bool = False


class SlackListeners:
    def __init__(
        self,
        config: SlackConfig,
        handler: SlackHandler,
        client: AsyncWebClient,
        me: Identity,
        *,
        signing_secret: str,
        socket_mode: bool,
    ) -> None:
        self.config = config
        self.handler = handler
        self.client = client
        self.router = EventRouter(config, client, me, handler)
        self.poster = Poster(
            client, limit=config.max_message_chars, streams=config.stream_api == "auto"
        )
        self.slots = Slots(config.max_in_flight)  # pipelines running at once
        self.tasks: set[asyncio.Task[Any]] = set()
        self.admin_ack_budget_s = ADMIN_ACK_BUDGET_S
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.app = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            # False: bolt returns the ack before the listener finishes (Slack's 3 s rule).
            process_before_response=False,
            request_verification_enabled=not socket_mode,
            logger=logging.getLogger("guardbot.slack.bolt"),
            name="guardbot",
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        # Any other subscribed event is acked and ignored, so Slack does not retry it.
        self.app.event(re.compile(".*"))(self._on_other)
        self.app.command(config.command)(self._on_command)

    # -- HTTP requests -------------------------------------------------------

    async def dispatch_http(
        self, raw: bytes, headers: Mapping[str, str], *, query: str = "", peer: str = "?"
    ) -> BoltResponse:
        """One Events API or slash-command request: checked here, then answered by bolt."""
        if not self._signed(raw, headers):
            log.warning(
                "slack: rejected a request from %s with a bad or stale signature (if Slack's "
                "own requests fail too, check SLACK_SIGNING_SECRET)",
                peer,
            )
            return BoltResponse(status=401, body={"error": "invalid request signature"})
        try:
            text = raw.decode("utf-8")
            content_type = extract_content_type(build_normalized_headers(dict(headers)))
            problem = malformed(parse_body(text, content_type))
        except UnicodeDecodeError:
            problem = "the body is not UTF-8"
        except ValueError:  # json.JSONDecodeError
            problem = "the body (or its payload field) is not JSON"
        if problem is None:
            try:
                request = AsyncBoltRequest(body=text, query=query, headers=dict(headers))
            except Exception as exc:  # a shape malformed() does not know yet
                problem = f"bolt cannot read it ({type(exc).__name__})"
            else:
                return await self.app.async_dispatch(request)
        log.warning("slack: rejected a malformed request from %s: %s", peer, problem)
        return BoltResponse(status=400, body={"error": f"malformed request: {problem}"})

    def _signed(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        if self.verifier is None:
            return False
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            return self.verifier.is_valid(
                raw, lowered.get("x-slack-request-timestamp"), lowered.get("x-slack-signature")
            )
        except (ValueError, TypeError):  # a timestamp that is not a number, a non-ASCII digest
            return False

    # -- listeners (run by bolt right after the ack) ------------------------

    async def _on_mention(
        self, body: dict[str, Any], event: dict[str, Any], request: AsyncBoltRequest
    ) -> None:
        if await self.router.first_delivery(body, request.headers):
            self.spawn(self._route_and_answer(event, mention=True))

    async def _on_message(
        self, body: dict[str, Any], event: dict[str, Any], request: AsyncBoltRequest
    ) -> None:
        if await self.router.first_delivery(body, request.headers):
            self.spawn(self._route_and_answer(event, mention=False))

    async def _on_other(self, body: dict[str, Any]) -> None:
        event = body.get("event")
        log.debug("slack: ignoring event %s", event.get("type") if isinstance(event, dict) else "")

    async def _on_command(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        self.spawn(self._command(ack, command, respond))

    # -- tasks ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("slack: a task failed", exc_info=task.exception())

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight answers finish for up to ``timeout_s``; cut off the rest."""
        self.slots.close()  # those still waiting for a slot are recorded, not answered
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)
        leftover = set(self.tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            log.warning("slack: %d answers cut off at shutdown", len(leftover))
            await asyncio.wait(leftover)

    async def _route_and_answer(self, event: Mapping[str, Any], *, mention: bool) -> None:
        routed = await self.router.route(event, mention=mention)
        if isinstance(routed, NotAllowed):
            await self.poster.ephemeral(routed.channel, routed.user, NOT_ALLOWED_NOTICE)
        elif isinstance(routed, Incoming):
            await self.answer(routed)

    async def answer(self, incoming: Incoming) -> None:
        progress = _Progress()
        try:
            await self._answer(incoming, progress)
        except asyncio.CancelledError:
            await self._cut_off(incoming, progress)
            raise

    async def _answer(self, incoming: Incoming, progress: _Progress) -> None:
        if incoming.starts_thread:
            self.router.remember_thread(incoming.channel, incoming.thread_ts)

        messages = SlackMessages(
            self.poster,
            incoming.channel,
            incoming.thread_ts,
            team_id=incoming.team_id,
            user_id=incoming.request.user_id,
        )
        view = progress.view = LiveReply(messages, interval_s=self.config.min_update_interval_s)
        progress.messages = messages

        async def decide() -> None:
            try:
                async with self.slots.held():
                    progress.admitted = True
                    progress.decision = await self._decide(incoming.request, view)
            except NotAdmitted:
                progress.turned_away = True  # once: a cancel mid-record does not record twice
                await self.handler.record_cut_off(incoming.request, NOT_ANSWERED)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(messages.post_placeholder(self.config.placeholder))
            tg.create_task(decide())
        decision = progress.decision
        fallback = CRASH_REPLY if progress.admitted else SHUTDOWN_REPLY  # no decision
        sent, error = await view.finish(decision.reply if decision is not None else fallback)
        if error:
            log.warning("slack: reply not (fully) delivered in %s: %s", incoming.channel, error)
        progress.delivered = True
        if decision is not None:
            await self._record(decision, progress, sent=sent, error=error)

    async def _decide(self, request: ChatRequest, view: LiveReply) -> Decision | None:
        # With stream_api "off" the pipeline gets no view: nothing is shown until the
        # whole reply is screened, and ``finish`` posts it as one (split) reply.
        shown = view if self.config.stream_api != "off" else None
        try:
            return await self.handler.handle(request, view=shown)
        except Exception:
            log.exception("slack: the pipeline failed on message %s", request.message_id)
            return None

    async def _record(
        self, decision: Decision, progress: _Progress, *, sent: bool, error: str | None
    ) -> None:
        assert progress.view is not None and progress.messages is not None
        progress.view.annotate(decision.stream)  # updates made and failures, with the delivery
        # A stream call whose answer was lost, repaired by an update: no update failed,
        # so the view has no failure to report, but an auditor should see it happened.
        repaired = progress.messages.repaired
        if repaired:
            if decision.stream is not None:
                decision.stream.delivery_errors.extend(repaired)
            error = "; ".join([*filter(None, [error]), *repaired])
        try:
            await self.handler.record_delivery(decision, sent=sent, error=error)
        except Exception:
            log.exception("slack: could not record the delivery of %s", decision.id)

    async def _cut_off(self, incoming: Incoming, progress: _Progress) -> None:
        """Shutdown cancelled an answer: end it in Slack and on the record, briefly.

        A decision already made is on record, so its reply may still go out; an
        answer cut off inside the pipeline keeps what was shown, with a note
        (the bot records that decision as cut off); one cancelled before its
        turn never reached the bot, so it is recorded here.
        """
        view, decision = progress.view, progress.decision
        if progress.delivered:
            return
        if not (progress.admitted or progress.turned_away):
            await self.handler.record_cut_off(incoming.request, NOT_ANSWERED)
        if view is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CUT_OFF_BUDGET_S):
                if decision is None:
                    await view.cut_off(SHUTDOWN_REPLY, CUT_OFF_NOTE)
                    return
                sent, error = await view.finish(decision.reply)
                why = error if sent else "; ".join(filter(None, [error, "stopped before posting"]))
                await self._record(decision, progress, sent=sent, error=why)

    # -- the slash command --------------------------------------------------

    async def _command(
        self, ack: AsyncAck, command: Mapping[str, Any], respond: AsyncRespond
    ) -> None:
        # Slack escapes &, < and > in command text as it does in messages.
        text = from_slack(command.get("text"))
        request = ChatRequest(
            platform="slack",
            channel_id=str(command.get("channel_id") or ""),
            user_id=str(command.get("user_id") or ""),
            user_name=str(command.get("user_name") or ""),
            message_id=str(command.get("trigger_id") or ""),
            text=f"{self.config.command} {text}".strip(),
        )
        work = self.spawn(self._admin(request, text))
        try:
            async with asyncio.timeout(self.admin_ack_budget_s):
                answer = await asyncio.shield(work)
        except TimeoutError:
            # Slow (a big query): ack now, answer through the response_url.
            await ack(response_type="ephemeral", text="Working on it…")
            parts = slack_messages(await work, self.config.max_message_chars) or ["(no output)"]
        else:
            parts = slack_messages(answer, self.config.max_message_chars) or ["(no output)"]
            await ack(response_type="ephemeral", text=parts.pop(0))
        for part in parts:
            try:
                await respond(text=part, response_type="ephemeral")
            except Exception as exc:
                log.warning("slack: %s", describe("response_url", exc))
                return

    async def _admin(self, request: ChatRequest, text: str) -> str:
        try:
            # Slack has no counterpart of Discord's Manage Server: only [admin] users count.
            return await self.handler.admin(request, text)
        except Exception:
            log.exception("slack: admin command failed")
            return COMMAND_FAILED
