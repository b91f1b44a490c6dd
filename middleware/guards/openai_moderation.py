"""``openai_moderation``: the moderations endpoint, with per-category thresholds.

The endpoint is not a chat completion, so this guard talks to a
:class:`ModerationClient` (``moderate(text, model=, timeout_s=) -> body``)
rather than a ChatModel; :class:`OpenAIModeration` adapts the official
``AsyncOpenAI`` client, with the guard's timeout as the call's deadline (a
retry the guard has no time for fails at once, naming the status). The body
is read here, with the one strict parser (duplicate keys, NaN, prose:
errors), and must hold exactly one result. A category is unsafe at or above
its threshold, and whatever the scores, the server's own flags count:
``flagged`` or a category marked ``true`` blocks, unless that category is
ignored or has its own threshold in ``thresholds`` (then its score decides,
as the operator asked). A body that does not parse but marks something
``true`` blocks too, so a fail-open guard cannot let it through. Category
names are compared in one canonical form, so ``self_harm`` in config.toml
matches the API's ``self-harm``; every score is kept in the verdict's raw
output for the audit.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import openai

from middleware.errors import LLMError, VerdictParseError
from middleware.guards.config import OpenAIModerationGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.guards.llm_guard import skipped_verdict
from middleware.llm.model import MAX_ANSWER_CHARS, probability, quote_value, strict_json_object
from middleware.llm.openai_client import CALL_DEADLINE
from middleware.llm.openai_model import describe_error
from middleware.types import Verdict

# In a moderation body only flags are booleans, so any `: true` marks something unsafe;
# read only from a body that failed the strict parse, and only to block.
_SAYS_TRUE = re.compile(r":\s*true\b", re.IGNORECASE)


class ModerationClient(Protocol):
    async def moderate(self, text: str, *, model: str, timeout_s: float) -> str:
        """The response body as the server sent it (the guard parses it)."""
        ...


def canonical(category: str) -> str:
    return category.strip().lower().replace("/", "_").replace("-", "_")


class OpenAIModeration:
    """A :class:`ModerationClient` over the official client (OpenAI or compatible servers)."""

    def __init__(self, client: Any) -> None:
        self.client = client  # openai.AsyncOpenAI

    async def moderate(self, text: str, *, model: str, timeout_s: float) -> str:
        # The guard is timed out after timeout_s too: a retry that would wait past it is
        # not waited for, so a 429 is reported as such rather than as a timeout.
        deadline = CALL_DEADLINE.set(time.perf_counter() + timeout_s)
        try:
            # The raw body, not the client's model: new or odd categories stay as sent,
            # and a repeated key is seen (a parsed model keeps the last one silently).
            response = await self.client.moderations.with_raw_response.create(
                input=text, model=model, timeout=timeout_s
            )
            return str(response.text)
        except openai.OpenAIError as exc:
            raise LLMError(describe_error(exc)) from exc
        finally:
            CALL_DEADLINE.reset(deadline)


@dataclass(frozen=True, slots=True)
class ModerationAnswer:
    """One moderation result as read: scores (unscored categories left out), the
    categories the server marked ``true``, its ``flagged``, and ``problem`` when
    the body did not parse but marks something unsafe (it blocks all the same)."""

    scores: dict[str, float]
    marked: tuple[str, ...] = ()
    flagged: bool = False
    problem: str | None = None


def parse_moderation(body: str) -> ModerationAnswer:
    """The one result of a moderations response; VerdictParseError when there is none."""
    try:
        return _strict_moderation(body)
    except VerdictParseError as exc:
        if len(body) <= MAX_ANSWER_CHARS and _SAYS_TRUE.search(body):
            return ModerationAnswer({}, flagged=True, problem=str(exc))
        raise


def _strict_moderation(body: str) -> ModerationAnswer:
    data = strict_json_object(body)
    results = data.get("results")
    if not isinstance(results, list):
        raise VerdictParseError(f"'results' must be a list, got {quote_value(results)}", body)
    if len(results) != 1 or not isinstance(results[0], dict):
        raise VerdictParseError(f"expected exactly one result, got {len(results)}", body)
    result = results[0]
    flagged = result.get("flagged")
    if flagged is not None and not isinstance(flagged, bool):
        raise VerdictParseError(
            f"'flagged' must be true or false, got {quote_value(flagged)}", body
        )
    categories = result.get("categories") or {}
    if not isinstance(categories, dict) or any(
        v is not None and not isinstance(v, bool) for v in categories.values()
    ):
        raise VerdictParseError("'categories' must map names to true or false", body)
    marked = tuple(str(k) for k, v in categories.items() if v is True)
    try:
        scores = _scores(result.get("category_scores"), body)
    except VerdictParseError as exc:
        if flagged or marked:
            return ModerationAnswer({}, marked, True, str(exc))
        raise
    return ModerationAnswer(scores, marked, bool(flagged))


def _scores(value: object, body: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise VerdictParseError("moderation response has no category scores", body)
    scores: dict[str, float] = {}
    for name, score in value.items():
        if score is None:
            continue  # a category this model does not score
        read = probability(score)
        if read is None:
            raise VerdictParseError(
                f"score of {quote_value(name)} is not a number from 0 to 1", body
            )
        scores[str(name)] = read
    if not scores:
        raise VerdictParseError("moderation returned no category scores", body)
    return scores


class OpenAIModerationGuard:
    local = False  # an HTTP call

    def __init__(self, cfg: OpenAIModerationGuardConfig, client: ModerationClient | None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.client = client
        self.offline = client is None  # no provider configured: verdicts say "skipped"
        self.thresholds = {canonical(k): v for k, v in cfg.thresholds.items()}
        self.ignore = {canonical(k) for k in cfg.ignore}

    async def check(self, text: str, context: GuardContext) -> Verdict:
        if self.client is None:
            return skipped_verdict(self.name, context)
        body = await self.client.moderate(text, model=self.cfg.model, timeout_s=self.cfg.timeout_s)
        answer = parse_moderation(body)
        # The server's marks count unless the operator ignores the category or judges
        # it by a threshold of its own.
        marked = [
            n for n in answer.marked if canonical(n) not in self.ignore | self.thresholds.keys()
        ]
        if answer.problem is not None:
            result = verdict(
                self.name,
                context,
                unsafe=True,
                category=",".join(marked) or "flagged",
                reason=f"unparseable answer that says unsafe ({answer.problem})",
                raw=body,
            )
            return result.model_copy(update={"model": self.cfg.model})
        checked = {n: s for n, s in answer.scores.items() if canonical(n) not in self.ignore}
        over = sorted(
            ((n, s) for n, s in checked.items() if s >= self._threshold(n)), key=lambda x: -x[1]
        )
        marked = [n for n in marked if n not in dict(over)]
        # `flagged` that no category explains is the server's verdict too.
        flag_only = answer.flagged and not answer.marked and not over
        top = max(checked.values(), default=0.0)
        said = [f"{n} {s:.2f} >= {self._threshold(n):g}" for n, s in over]
        said += [f"{n} marked by the server ({checked.get(n, 0.0):.2f})" for n in marked]
        if flag_only:
            said.append(f"flagged by the server (highest {top:.2f})")
        blocking = [s for n, s in over] + [checked.get(n, 0.0) for n in marked]
        result = verdict(
            self.name,
            context,
            unsafe=bool(said),
            category=",".join([n for n, _ in over] + marked) or ("flagged" if flag_only else ""),
            score=round(max(blocking, default=top), 4),
            reason=", ".join(said) or f"no category over its threshold (highest {top:.2f})",
            raw=json.dumps(answer.scores, sort_keys=True),
        )
        return result.model_copy(update={"model": self.cfg.model})

    def _threshold(self, category: str) -> float:
        return self.thresholds.get(canonical(category), self.cfg.threshold)
