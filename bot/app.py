"""The application object every adapter talks to: :class:`GuardBot`.

It joins the parts for one message: conversation history from the decision
log, the effective policy for the channel, the pipeline, and the audit write
that must succeed *before* any reply is handed back for posting. If the log
cannot be written the bot refuses to answer rather than send an unaudited reply.

It also keeps two promises at the edges of one message: the values of the
secrets it was given are masked in everything it stores, logs or answers
(:func:`remember_secrets`), and a message cut off at shutdown still leaves a
decision on record (action ``error``, reason ``shutdown``); one cut off mid-stream
also says what the user was shown (:mod:`bot.shown_reply`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from functools import partial

from adapters.admin import AdminCommands
from bot.admin import REGISTRY, run_admin_command
from bot.admin.context import Handler
from bot.audit.overrides import banner as overrides_banner
from bot.config.policies import PolicyBuilder
from bot.config.providers import ModelProvider
from bot.config.runtime import RuntimeSettings
from bot.config.schema import Config, secret_env_names
from bot.shown_reply import CUT_OFF, ShownReply, record_cut_off_after, record_cut_off_stream
from middleware.decision_log.postgres import PostgresLog, open_store
from middleware.decision_log.storage import DecisionStore, LogUnavailable
from middleware.guards.llm_guard import offline_notice
from middleware.llm.model import ChatModel
from middleware.masking import clean, mask_text, remember_secrets
from middleware.pipeline.budget import budget_refusal, check_budget
from middleware.pipeline.policy import PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.pipeline.streaming import ReplyView, StreamSettings, finish
from middleware.types import Action, ChatRequest, Decision, Delivery, Timings, new_id

log = logging.getLogger("guardbot")

AUDIT_DOWN_REPLY = (
    "Sorry, I can't answer right now: my audit log cannot be written, and I never "
    "send replies that are not on record. An administrator needs to check the log storage."
)
EMPTY_REPLY = "I didn't receive any text. Send me a message and I'll answer."
INTERNAL_ERROR_REPLY = "Sorry, something went wrong on my side while answering. Please try again."
SHUTDOWN_ERROR = "shutdown: the bot stopped before the reply was ready"
SHUTDOWN_RECORD_S = 2.0  # how long a cut-off message may take to reach the log


def remember_env_secrets(env: Mapping[str, str], config: Config | None = None) -> None:
    remember_secrets(env.get(name) for name in secret_env_names(config))


class GuardBot:
    """One request end to end; also the host the admin commands and replay work through
    (:class:`bot.admin.AdminHost`, :class:`bot.replay.rerun.ReplayHost`)."""

    def __init__(
        self,
        config: Config,
        decision_log: DecisionStore,
        *,
        env: Mapping[str, str] | None = None,
        model: ChatModel | None = None,
    ) -> None:
        self.config = config
        self.log: DecisionStore = decision_log
        env = os.environ if env is None else env
        remember_env_secrets(env, config)
        self.models = ModelProvider(config.llm, env, fixed=model)
        self.policies = PolicyBuilder(self.models)
        self.pipeline = Pipeline()
        # Admin overrides from the log, layered onto config.toml (see bot/config/runtime.py).
        self.settings = RuntimeSettings(config, decision_log)

    @classmethod
    async def open(cls, config: Config, *, env: Mapping[str, str] | None = None) -> GuardBot:
        decision_log = await open_store(
            config.log.target, store_text=config.log.store_text,
            redact_pii=config.log.redact_pii, password_env=config.log.password_env, env=env,
        )  # fmt: skip
        bot = cls(config, decision_log, env=env)
        try:
            await bot.settings.load()
            if isinstance(decision_log, PostgresLog):  # shared: other instances change settings
                decision_log.on_settings_changed(bot.settings.load)
            bot.warm_up()
        except BaseException:
            await decision_log.close()
            raise
        return bot

    def warm_up(self) -> None:
        """Build the default policy now (the profanity model loads once, at start),
        so the first user message does not pay for it."""
        config, fingerprint = self.settings.effective("", "")
        self.policies.policy(config, fingerprint)

    async def close(self) -> None:
        await self.models.close()
        await self.log.close()

    def notice(self) -> str | None:
        """Lines the operator should see at start: the offline echo model, the
        LLM guards that will therefore only say "skipped", and the runtime
        overrides from the log that change the policy of config.toml."""
        config, fingerprint = self.settings.effective("", "")
        guards = self.policies.policy(config, fingerprint).guards
        skipped = offline_notice((g.config.name, g.guard) for g in guards)
        overrides = overrides_banner(self.settings)
        # A config.toml without [[guards]] tables runs with none, which is easy to miss.
        unguarded = None if guards else "no guards configured: nothing is screened"
        lines = [x for x in (self.models.notice(), unguarded, skipped, overrides) if x]
        return "\nnotice: ".join(lines) or None

    @property
    def offline(self) -> bool:
        """Whether the offline echo model answers (no key, or ``provider = "echo"``)."""
        return self.models.offline

    @property
    def admin_commands(self) -> AdminCommands[Handler]:
        """Every admin command, for the platforms to build their forms from."""
        return REGISTRY

    def effective_config(self, request: ChatRequest) -> tuple[Config, str]:
        """The config for this request's channel, and its fingerprint."""
        return self.settings.effective(request.platform, request.channel_id)

    def policy_for(self, request: ChatRequest) -> tuple[Config, PipelinePolicy]:
        """The config and the built policy for this request's channel, as of now."""
        config, fingerprint = self.effective_config(request)
        return config, self.policies.policy(config, fingerprint)

    async def handle(self, request: ChatRequest, view: ReplyView | None = None) -> Decision:
        """One message end to end. With a ``view`` the reply is streamed into it (when
        ``[pipeline] stream`` is on for the channel), each chunk committed to the log
        before it is shown; on return the view shows the final message."""
        shown = ShownReply(view) if view is not None else None
        decision = await self._handle(request, shown)
        if shown is not None:
            await self._finish(shown, decision)
        return decision

    async def _finish(self, shown: ShownReply, decision: Decision) -> None:
        """Leave the view on the decision's message (recorded already), then record
        how the stream ended."""
        if decision.stream is None and shown.text:  # the log failed mid-stream
            await shown.view.retract(decision.reply)
            return
        await finish(shown.view, decision)
        if decision.stream is not None and decision.delivery.status != "none":
            try:
                await self.log.record_stream_end(decision.id, decision.stream)
            except LogUnavailable as exc:
                log.error("could not record the end of stream %s: %s", decision.id, exc)

    async def _handle(self, request: ChatRequest, view: ShownReply | None) -> Decision:
        # A cancel at any await here (shutdown) still leaves a decision: adapters count on it.
        try:
            await self.settings.ensure_loaded()
        except asyncio.CancelledError:
            await self.record_cut_off(request, SHUTDOWN_ERROR)
            raise
        config, fingerprint = self.effective_config(request)
        request = storable(request)
        if not request.text.strip():
            decision = Decision(
                request=request, action=Action.ERROR, reply=EMPTY_REPLY, error="empty message"
            )
        else:
            try:
                decision = await self._decide(request, config, fingerprint, view)
            except asyncio.CancelledError:
                await self._cut_off(request, view)
                raise
            except LogUnavailable as exc:
                return self._audit_down(request, fingerprint, str(exc))
            except Exception as exc:  # a bug must cost one message a clear reply, never the bot
                log.exception("failed to handle message %s", request.message_id)
                decision = _internal_error(request, exc)
        decision.config_fingerprint = decision.config_fingerprint or fingerprint
        decision.reply = mask_text(clean(decision.reply))  # a model may echo a key it saw
        try:
            await self._record(decision, view)
        except LogUnavailable as exc:
            return self._audit_down(request, fingerprint, str(exc))
        except Exception as exc:  # a value the log cannot store (a bug): on record all the same
            log.exception("could not record decision %s", decision.id)
            decision = _internal_error(request, exc, decision.id, fingerprint)
            try:
                await self._record(decision, view)
            except Exception as again:  # LogUnavailable too: no reply without a record
                return self._audit_down(request, fingerprint, str(again))
        return decision

    async def _record(self, decision: Decision, view: ShownReply | None) -> None:
        """Record ``decision``; cancelled meanwhile (shutdown), it is still on record once:
        a cancelled caller's job commits anyway unless the writer stopped before it began,
        so the cut-off (same id, unique in the log) is written only if it did not commit."""
        recording = asyncio.ensure_future(self.log.record(decision))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait([recording], timeout=SHUTDOWN_RECORD_S)
            if done and (recording.cancelled() or recording.exception() is not None):
                await self._cut_off(decision.request, view, decision.id)
            elif done:  # on record; a streamed reply's view still ends on its message
                try:
                    await record_cut_off_after(self.log, decision, view, SHUTDOWN_RECORD_S)
                except (LogUnavailable, TimeoutError) as exc:
                    log.error("could not record the cut-off of %s: %s", decision.id, exc)
            raise

    async def _decide(
        self, request: ChatRequest, config: Config, fingerprint: str, view: ShownReply | None
    ) -> Decision:
        budget = config.budget
        spent = await check_budget(
            self.log,
            request,
            user_daily_tokens=budget.user_daily_tokens,
            channel_daily_tokens=budget.channel_daily_tokens,
        )
        if spent is not None:  # refused politely, and recorded like any other decision
            return budget_refusal(request, spent, message=budget.message, fingerprint=fingerprint)
        policy = self.policies.policy(config, fingerprint)
        p = config.pipeline
        history = None
        if not request.history and p.history_turns:
            # Read by the pipeline while the input guards start (the log is the memory).
            history = partial(
                self.log.history,
                request.platform,
                request.channel_id,
                request.thread_id,
                max_turns=p.history_turns,
                max_chars=p.history_chars,
            )
        if view is None or not p.stream:
            return await self.pipeline.run(request, policy, history=history)
        stream = StreamSettings(p.chunk_chars, p.context_chars, p.max_hold_ms)
        # The log is the recorder (through the view, which remembers what went out):
        # each chunk is committed before the view shows it.
        view.start(new_id(), self.log, stream)
        return await self.pipeline.run(
            request,
            policy,
            view=view,
            stream=stream,
            recorder=view,
            decision_id=view.decision_id,
            history=history,
        )

    async def record_cut_off(
        self,
        request: ChatRequest,
        why: str,
        elapsed_ms: float = 0.0,
        *,
        decision_id: str | None = None,
    ) -> None:
        """A message cancelled before its reply was ready: put that on record, briefly.

        The caller re-raises the cancellation; this only makes sure the message
        does not vanish from the audit trail (no final reply was posted for it).
        ``decision_id``: the id its decision was being recorded under, if any.
        """
        decision = self._cut_off_decision(request, why, elapsed_ms, decision_id)
        try:
            async with asyncio.timeout(SHUTDOWN_RECORD_S):
                await self.log.record(decision)
                await self.log.record_delivery(decision.id, "none", CUT_OFF)
        except (LogUnavailable, TimeoutError) as exc:
            log.error(
                "could not record message %s cut off at shutdown: %s", request.message_id, exc
            )

    def _cut_off_decision(
        self, request: ChatRequest, why: str, elapsed_ms: float, decision_id: str | None
    ) -> Decision:
        request = storable(request)
        _, fingerprint = self.effective_config(request)
        return Decision(
            id=decision_id or new_id(),
            request=request,
            action=Action.ERROR,
            error=why,
            timings=Timings(total_ms=elapsed_ms),
            config_fingerprint=fingerprint,
        )

    async def _cut_off(
        self, request: ChatRequest, view: ShownReply | None, decision_id: str | None = None
    ) -> None:
        """A message cut off before its decision was on record. A reply cut off mid-stream
        is recorded under the id its chunks are on record under, as the user saw it
        (:func:`~bot.shown_reply.record_cut_off_stream`); any other as not answered."""
        if view is None or not view.streamed:
            await self.record_cut_off(request, SHUTDOWN_ERROR, decision_id=decision_id)
            return
        decision = self._cut_off_decision(request, SHUTDOWN_ERROR, 0.0, view.decision_id)
        try:
            await record_cut_off_stream(self.log, decision, view, SHUTDOWN_RECORD_S)
        except (LogUnavailable, TimeoutError) as exc:
            log.error("could not record reply %s cut off at shutdown: %s", decision.id, exc)

    def _audit_down(self, request: ChatRequest, fingerprint: str, why: str) -> Decision:
        log.error("decision log unavailable, refusing to reply: %s", why)
        return Decision(
            request=request,
            action=Action.ERROR,
            reply=AUDIT_DOWN_REPLY,
            error=f"decision log unavailable: {why}",
            delivery=Delivery(status="none"),
            config_fingerprint=fingerprint,
        )

    async def record_delivery(self, decision: Decision, *, sent: bool, error: str | None) -> None:
        # "none": the decision was never recorded (log down), so there is nothing to attach to.
        recorded = decision.delivery.status != "none"
        decision.delivery = Delivery(status="sent" if sent else "failed", error=error)
        if not recorded:
            return
        try:
            await self.log.record_delivery(decision.id, decision.delivery.status, error)
            if decision.stream is not None:  # again, with the platform's updates and failures
                await self.log.record_stream_end(decision.id, decision.stream)
        except LogUnavailable as exc:
            log.error("could not record delivery of %s: %s", decision.id, exc)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        # Log down: answer anyway (the reply is then the log-down refusal, and no
        # other instance can claim it either), rather than leave the user unanswered.
        try:
            return await self.log.claim_event(platform, event_id)
        except LogUnavailable as exc:
            log.warning(
                "could not claim %s event %s: %s; answering it here", platform, event_id, exc
            )
            return True

    async def admin(
        self, request: ChatRequest, command: str, *, platform_admin: bool = False
    ) -> str:
        return await run_admin_command(self, request, command, platform_admin=platform_admin)


_REQUEST_TEXT = ("text", "user_name", "user_id", "channel_id", "thread_id", "message_id")


def _internal_error(
    request: ChatRequest, exc: Exception, decision_id: str | None = None, fingerprint: str = ""
) -> Decision:
    """The decision of a message that failed on a bug; the same id keeps shown chunks its own."""
    return Decision(
        id=decision_id or new_id(),
        request=request,
        action=Action.ERROR,
        reply=INTERNAL_ERROR_REPLY,
        error=f"internal error: {type(exc).__name__}",
        config_fingerprint=fingerprint,
    )


def storable(request: ChatRequest) -> ChatRequest:
    """The request with lone surrogates and NUL replaced in every text field.

    Broken or hostile input (a message, a display name) cannot be encoded for any
    model or guard, nor stored by either backend: every part sees, and the log
    stores, U+FFFD in their place. Each platform's fields pass through here, so no
    adapter has to remember it.
    """
    update = {}
    for name in _REQUEST_TEXT:
        value = getattr(request, name)
        if (cleaned := clean(value)) is not value:
            update[name] = cleaned
    return request.model_copy(update=update) if update else request
