"""The Discord adapter as a service `guardbot run` starts and stops.

A thin edge on discord.py: a message it should answer (see
:mod:`adapters.discord.messages`) becomes a ChatRequest; the handler runs the
guarded pipeline while "is typing…" shows; the screened reply is posted as
it is released (see :mod:`adapters.discord.stream`: edited at a bounded rate,
split, never pinging) and its delivery recorded in the decision. The
``/guardbot`` command group forwards to the admin commands (see
:mod:`adapters.discord.interactions`). Rate limits are discord.py's job.

``start()`` logs in, connects and returns once Discord says READY, or raises
:class:`AdapterConfigError` with what to fix. If the gateway later ends for
good (a revoked token, a fatal close code), ``failed`` is set with the reason
in ``failure``, so `guardbot run` exits instead of serving nothing. ``stop()``
stops taking new messages, waits for those in flight, then logs out; the
application flushes its decision log after that. A message that gets no reply
because of the shutdown (still waiting for a slot, see :mod:`adapters.slots`,
or arriving once the stop began) is put on record as not answered first; a
reply cut off mid-stream keeps what it showed, followed by a note saying it was
cut off, if Discord takes that last edit within ``CUT_OFF_BUDGET_S``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import discord
from discord import app_commands

from adapters.base import AdapterConfigError, MessageHandler
from adapters.discord.client import PRESENCE, build_client, startup_error, wait_until_serving
from adapters.discord.commands import GuardbotCommands
from adapters.discord.config import DiscordConfig
from adapters.discord.delivery import (
    SEND_ERRORS,
    THREAD_NAME,
    describe,
    describe_error,
    typing_while,
)
from adapters.discord.interactions import answer_admin, answer_command_error, answer_ephemeral
from adapters.discord.messages import Conversations, is_dm, should_answer, to_request
from adapters.discord.stream import DiscordMessages
from adapters.live import CUT_OFF_NOTE, LiveReply
from adapters.slots import NOT_ANSWERED, NotAdmitted, Slots
from middleware.types import ChatRequest, Decision

log = logging.getLogger("guardbot.discord")

SORRY = "Sorry, something went wrong on my side. Please try again."
SHUTTING_DOWN = "guardbot is restarting; please try again in a minute."
DEFER_AFTER_S = 2.0  # answer within 3 s or defer; leaves a second for the network
ARRIVED_STOPPING = "not answered: shutting down (it arrived after the stop began)"
STRAGGLERS_S = 2.0  # after logging out: for records of messages that arrived meanwhile
CUT_OFF_BUDGET_S = 2.0  # after shutdown_timeout_s: the last edit of a reply cut off mid-stream


def discord_requested(config: DiscordConfig, env: Mapping[str, str] = os.environ) -> bool:
    """Whether `guardbot run` should start Discord: enabled and its token set."""
    return config.enabled and bool(env.get(config.token_env, "").strip())


def read_token(config: DiscordConfig, env: Mapping[str, str]) -> str:
    token = env.get(config.token_env, "").strip()
    if not token:
        raise AdapterConfigError(
            f"Discord: {config.token_env} is not set. Copy the bot token from the Developer "
            "Portal (your application → Bot → Reset Token)."
        )
    if token.lower().startswith("bot "):
        token = token[4:].strip()  # discord.py adds the "Bot " prefix itself
    if token.count(".") != 2:
        raise AdapterConfigError(
            f"Discord: {config.token_env} does not look like a bot token (three parts "
            "separated by dots); it may be the client secret or the application id. "
            "Use Developer Portal → Bot → Reset Token."
        )
    return token


class DiscordService:
    """Serves Discord for ``handler``. Keyword options exist for tests and tuning."""

    name = "discord"

    def __init__(
        self,
        config: DiscordConfig,
        handler: MessageHandler,
        token: str,
        *,
        ready_timeout_s: float = 60.0,
        guild_ready_timeout_s: float = 2.0,
        defer_after_s: float = DEFER_AFTER_S,
        identify_interval_s: float = 5.0,
        cut_off_budget_s: float = CUT_OFF_BUDGET_S,
    ) -> None:
        self.config = config
        self.handler = handler
        self._token = token
        self.ready_timeout_s = ready_timeout_s
        self.defer_after_s = defer_after_s
        self.identify_interval_s = identify_interval_s
        self.cut_off_budget_s = cut_off_budget_s
        self.conversations = Conversations()
        self.client = build_client(config, self, guild_ready_timeout_s=guild_ready_timeout_s)
        self.tree = app_commands.CommandTree(self.client)
        self.tree.add_command(GuardbotCommands(handler.admin_commands, self.run_admin))
        self.tree.error(answer_command_error)
        self.stopping = asyncio.Event()  # set when stop() begins: no new messages after it
        self.failed = asyncio.Event()  # set when the gateway ended on its own, for good
        self.failure = ""  # why, for the operator
        self._slots = Slots(config.max_in_flight)  # pipelines running at once
        self._accepting = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None

    @classmethod
    def from_env(
        cls,
        config: DiscordConfig,
        handler: MessageHandler,
        env: Mapping[str, str] = os.environ,
        **options: Any,
    ) -> DiscordService:
        return cls(config, handler, read_token(config, env), **options)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Log in, connect, and return once Discord says READY."""
        if self._runner is not None:
            raise RuntimeError("the Discord service was already started")
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                await self._login()
            self._runner = asyncio.create_task(self.client.connect(), name="discord gateway")
            await wait_until_serving(self.client, self._runner, self.ready_timeout_s)
        except BaseException as exc:
            await self._close_client()
            if isinstance(exc, TimeoutError):
                raise AdapterConfigError(
                    f"Discord: not ready after {self.ready_timeout_s:g} s (is discord.com "
                    "reachable from here?)"
                ) from None
            raise
        self._runner.add_done_callback(self._gateway_ended)
        self._accepting = True
        user = self.client.user
        log.info("Discord: logged in as %s (%s)", user, user.id if user else "?")
        try:
            await self.client.change_presence(activity=PRESENCE)
        except (discord.DiscordException, OSError) as exc:  # cosmetic
            log.debug("Discord: could not set the presence: %s", exc)

    async def _login(self) -> None:
        try:
            await self.client.login(self._token)
        except discord.LoginFailure:
            raise AdapterConfigError(
                f"Discord rejected the token in {self.config.token_env} (401 Unauthorized). "
                "Reset it in the Developer Portal (Bot → Reset Token) and set it again."
            ) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            raise AdapterConfigError(f"Discord: cannot log in: {exc}") from None

    async def stop(self) -> None:
        """Stop taking messages, let those in flight finish, then log out."""
        self._accepting = False
        self.stopping.set()
        self._slots.close()  # those waiting for a slot go on record as not answered
        if waiting := self._pending():
            log.info("Discord: finishing %d message(s) in flight", len(waiting))
        await self._drain(self.config.shutdown_timeout_s)
        await self._close_client()
        await self._drain(STRAGGLERS_S)

    def _pending(self) -> set[asyncio.Task[Any]]:
        return {t for t in self._inflight if not t.done()}

    async def _drain(self, timeout_s: float) -> None:
        """Until nothing is in flight (messages arriving meanwhile count too), then cancel."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (pending := self._pending()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(pending, timeout=left)
        if late := self._pending():
            for task in late:
                task.cancel()
            log.warning("Discord: %d message(s) cancelled at shutdown", len(late))
            await asyncio.wait(late)

    async def _close_client(self) -> None:
        await self.client.close()
        if self._runner is not None and not self._runner.done():
            await asyncio.wait({self._runner}, timeout=10)

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        """discord.py reconnects by itself; the runner ends only on close or a fatal error."""
        if self.stopping.is_set():
            return
        exc = None if task.cancelled() else task.exception()
        self._accepting = False
        self.failure = (
            str(startup_error(exc)) if exc is not None else "Discord: the gateway connection closed"
        )
        log.error("Discord: the gateway connection ended: %s", self.failure)
        self.failed.set()

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        """Count the current task as in flight, so stop() waits for it."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._inflight.add(task)
        try:
            yield
        finally:
            self._inflight.discard(task)

    async def sync_commands(self) -> None:
        """Register ``/guardbot`` (globally, or in ``command_guilds`` at once)."""
        if not self.config.sync_commands:
            return
        try:
            if not self.config.command_guilds:
                await self.tree.sync()
            for guild_id in self.config.command_guilds:
                guild = discord.Object(int(guild_id))
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning(
                "Discord: could not register /guardbot (%s); was the bot invited with the "
                "applications.commands scope?",
                describe(exc),
            )

    # -- messages ----------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or not (self._accepting or self.stopping.is_set()):
            return
        if not should_answer(message, me, self.config):
            return
        with self._tracked():
            if self._accepting:
                await self._answer(message, me)
            else:
                await self._not_answered(message, me)

    async def _not_answered(self, message: discord.Message, me: discord.ClientUser) -> None:
        """A message that arrived during shutdown: no reply, but a record."""
        try:
            request = await to_request(message, me, self.conversations)
        except Exception:  # the client may be logging out under it
            log.exception("Discord: message %s arrived at shutdown, not recorded", message.id)
            return
        await self.handler.record_cut_off(request, ARRIVED_STOPPING)

    async def _answer(self, message: discord.Message, me: discord.ClientUser) -> None:
        channel = message.channel
        thread = None
        if (
            self.config.start_threads
            and isinstance(channel, discord.TextChannel)
            and message.reference is None
        ):
            thread = await self._start_thread(message)
        target: discord.abc.Messageable = thread or channel
        own_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id
        reference = None
        if thread is None and not is_dm(channel) and not own_thread:
            reference = message.to_reference(fail_if_not_exists=False)
        request = await to_request(message, me, self.conversations, thread=thread)
        messages = DiscordMessages(target, event=message.id, reference=reference)
        view = LiveReply(messages, interval_s=self.config.min_edit_interval_s)
        decision: Decision | None = None
        admitted = False
        try:
            async with typing_while(target) as typing, self._slots.held():  # may wait its turn
                admitted = True
                messages.typing = typing  # a streamed reply stops it at its first chunk
                decision = await self.handler.handle(request, view=view)
        except NotAdmitted:
            await self.handler.record_cut_off(request, NOT_ANSWERED)
            return
        except asyncio.CancelledError:
            if not admitted:  # once admitted, the handler records the cut-off itself
                await self.handler.record_cut_off(request, NOT_ANSWERED)
            # The bot gave the view its last text (what was shown, then the cut-off note;
            # a retraction as it is) and put that on record. With nothing released the
            # user only saw "is typing…", and an empty reply posts nothing.
            await self._last_edits(view, view.cut_off("", CUT_OFF_NOTE))
            raise
        except Exception:
            log.exception("Discord: handling message %s failed", message.id)
        reply = decision.reply if decision is not None else SORRY
        try:
            sent, error = await view.finish(reply)
        except asyncio.CancelledError:  # the decision is on record: its reply may still go out
            await self._last_edits(
                view, self._finish_late(view, messages, reply, request, decision)
            )
            raise
        await self._delivered(view, messages, request, decision, sent=sent, error=error)

    async def _finish_late(
        self,
        view: LiveReply,
        messages: DiscordMessages,
        reply: str,
        request: ChatRequest,
        decision: Decision | None,
    ) -> None:
        sent, error = await view.finish(reply)  # anew: the cancel stopped the first try
        if not sent:
            error = "; ".join(filter(None, [error, "stopped before posting"]))
        await self._delivered(view, messages, request, decision, sent=sent, error=error)

    async def _delivered(
        self,
        view: LiveReply,
        messages: DiscordMessages,
        request: ChatRequest,
        decision: Decision | None,
        *,
        sent: bool,
        error: str | None,
    ) -> None:
        if decision is None:
            return
        for posted in messages.messages:
            self.conversations.remember(posted.id, request.thread_id)
        view.annotate(decision.stream)  # edits made and failures, with the delivery
        try:
            await self.handler.record_delivery(decision, sent=sent, error=error)
        except Exception:
            log.exception("Discord: could not record the delivery of %s", decision.id)

    async def _last_edits(self, view: LiveReply, work: Awaitable[object]) -> None:
        """Shutdown cancelled an answer: its last edits get ``cut_off_budget_s``, no more.

        They may still wait their turn (the edit interval, a 429), and the user
        should see where the reply ended; a Discord that does not answer them
        must not hold shutdown. Whatever is shown after that stays.
        """
        try:
            async with asyncio.timeout(self.cut_off_budget_s):
                await work
        except TimeoutError:
            log.warning(
                "Discord: a reply cut off at shutdown was not updated within %.1f s",
                self.cut_off_budget_s,
            )
        except Exception:  # a view should not raise; the cancellation must go on regardless
            log.exception("Discord: ending a reply cut off at shutdown failed")
        finally:
            await view.close()  # nothing more is sent

    async def _start_thread(self, message: discord.Message) -> discord.Thread | None:
        # A neutral name: the thread exists before the guards have read the message, and
        # its title is published under the bot's name, so no user text may go into it.
        try:
            return await message.create_thread(name=THREAD_NAME)
        except SEND_ERRORS as exc:
            log.warning(
                "Discord: cannot start a thread (%s); replying in the channel",
                describe_error(exc),
            )
            return None

    # -- /guardbot ---------------------------------------------------------

    async def run_admin(self, interaction: discord.Interaction, command: str) -> None:
        with self._tracked():
            if not self._accepting:
                await answer_ephemeral(interaction, SHUTTING_DOWN)
                return
            await answer_admin(interaction, self.handler, command, defer_after_s=self.defer_after_s)
