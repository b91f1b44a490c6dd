"""Daily token budgets per user and per channel, read from the decision log.

Best-of-N multiplies what a message costs, so an operator can cap the tokens
one user or one channel may spend per UTC day. The log already records every
call's tokens, so the budget keeps no counter of its own: it asks the log how
much was used since midnight UTC and, when a cap is reached, the bot answers
with a polite refusal that is itself recorded as a decision. The check runs
before the pipeline, so a message can overshoot the cap by its own cost (and
concurrent messages by theirs): it is a soft limit, which is what a daily
budget needs, without a lock around every message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Protocol

from middleware.types import Action, ChatRequest, Decision, Delivery, Outcome, Stage, Verdict

log = logging.getLogger("guardbot.budget")


class UsageLog(Protocol):
    """What the budget needs from the decision log."""

    async def tokens_used_since(
        self,
        since: datetime,
        *,
        user_id: str | None = None,
        channel_id: str | None = None,
        platform: str | None = None,
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    scope: str  # "user" | "channel"
    subject: str  # the user or channel id
    used: int
    limit: int

    @property
    def reason(self) -> str:
        return f"{self.scope} {self.subject} used {self.used} of {self.limit} tokens today (UTC)"


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: budgets reset for everyone at the same instant."""
    now = now.astimezone(UTC)
    return datetime.combine(now.date(), time.min, tzinfo=UTC)


async def check_budget(
    usage: UsageLog,
    request: ChatRequest,
    *,
    user_daily_tokens: int | None,
    channel_daily_tokens: int | None,
    now: datetime | None = None,
) -> BudgetSpent | None:
    """The first spent budget for this request, or None when it may go ahead.

    Fails open (logs and returns None) when the usage cannot be read: a budget
    is a cost control, not a safety guard, and a log that cannot be read will
    stop the reply at the audit write anyway.
    """
    since = day_start(now or datetime.now(UTC))
    limits = (
        ("user", request.user_id, user_daily_tokens),
        ("channel", request.channel_id, channel_daily_tokens),
    )
    # User and channel ids are only unique within a platform: a Slack user and a
    # console user both called "U1" are different people with different budgets.
    platform = request.platform
    for scope, subject, limit in limits:
        if not limit or not subject:
            continue
        try:
            if scope == "user":
                used = await usage.tokens_used_since(since, user_id=subject, platform=platform)
            else:
                used = await usage.tokens_used_since(since, channel_id=subject, platform=platform)
        except Exception as exc:
            log.warning("token budget skipped: cannot read usage: %s", type(exc).__name__)
            return None
        if used >= limit:
            return BudgetSpent(scope, subject, used, limit)
    return None


def budget_refusal(
    request: ChatRequest, spent: BudgetSpent, *, message: str, fingerprint: str = ""
) -> Decision:
    """The decision for a message refused because a budget is spent (no model call made)."""
    verdict = Verdict(
        guard=f"budget:{spent.scope}",
        stage=Stage.INPUT,
        outcome=Outcome.BLOCK,
        blocking=True,
        category="budget",
        score=float(spent.used),
        reason=spent.reason,
    )
    return Decision(
        request=request,
        action=Action.BLOCKED,
        reply=message,
        blocked_by=verdict.guard,
        verdicts=[verdict],
        config_fingerprint=fingerprint,
        delivery=Delivery(),
    )
