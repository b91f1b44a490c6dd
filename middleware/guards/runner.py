"""Runs one guard under its policy: timeout, error policy and action.

Every guard call in the pipeline goes through :func:`run_guard`, so the rules
are the same for every kind: a timeout or exception becomes an ``error``
verdict whose ``blocking`` follows ``on_error``; an unsafe verdict blocks,
flags or redacts according to ``action``. Cancellation from outside (a
blocking verdict elsewhere, shutdown) is never swallowed.
"""

from __future__ import annotations

import asyncio
import time

from middleware.errors import LLMError, VerdictParseError
from middleware.guards.config import GuardConfigBase
from middleware.guards.guard import Guard, GuardContext
from middleware.guards.normalize import LONG_TEXT_CHARS
from middleware.llm.model import clip
from middleware.types import Outcome, Verdict


def _error_verdict(
    cfg: GuardConfigBase, ctx: GuardContext, reason: str, raw: str | None
) -> Verdict:
    return Verdict(
        guard=cfg.name,
        stage=ctx.stage,
        outcome=Outcome.ERROR,
        reason=reason,
        raw=None if raw is None else clip(raw),
        candidate_index=ctx.candidate_index,
    )


async def run_guard(guard: Guard, cfg: GuardConfigBase, text: str, ctx: GuardContext) -> Verdict:
    started = time.perf_counter()
    try:
        if guard.local and len(text) < LONG_TEXT_CHARS:
            # A local guard on a short text never suspends, so a timeout could not
            # fire; skipping its timer halves the cost of the cheapest guards.
            result = await guard.check(text, ctx)
        else:
            async with asyncio.timeout(cfg.timeout_s):
                result = await guard.check(text, ctx)
    except TimeoutError:
        result = _error_verdict(cfg, ctx, f"timed out after {cfg.timeout_s:g}s", None)
    except VerdictParseError as exc:
        result = _error_verdict(cfg, ctx, f"unparseable verdict: {exc}", exc.raw)
    except LLMError as exc:
        result = _error_verdict(cfg, ctx, str(exc), exc.raw)
    except Exception as exc:  # a broken guard must not take the bot down
        result = _error_verdict(cfg, ctx, f"guard failed: {type(exc).__name__}: {exc}", None)
    latency_ms = (time.perf_counter() - started) * 1000
    return apply_policy(cfg, result, latency_ms)


def apply_policy(cfg: GuardConfigBase, result: Verdict, latency_ms: float) -> Verdict:
    """Turn what the guard said into what it does, per ``action`` and ``on_error``."""
    outcome = result.outcome
    blocking = False
    if outcome is Outcome.ERROR:
        blocking = cfg.on_error == "block"
    elif outcome is Outcome.BLOCK:
        if cfg.action == "flag":
            outcome = Outcome.FLAG
        elif cfg.action == "redact" and result.redacted_text is not None:
            outcome = Outcome.REDACT
        else:
            blocking = True
    # Guards return a fresh Verdict per call, so it is filled in place: a copy per
    # verdict was a measurable share of the per-message CPU cost. (Verdict does not
    # validate on assignment; these values are valid by construction.) A pydantic
    # assignment costs a fifth of a microsecond, so fields that already hold their
    # value (guards name their verdicts; most outcomes stand; most verdicts do not block)
    # are left alone.
    if result.guard != cfg.name:
        result.guard = cfg.name
    if result.outcome is not outcome:
        result.outcome = outcome
    if result.blocking is not blocking:
        result.blocking = blocking
    result.latency_ms = round(latency_ms, 3)
    return result
