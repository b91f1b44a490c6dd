"""The protocol every chat model implements, and what a structured answer must be.

The pipeline, the LLM guards and the best-of-N selectors all talk to models
only through :class:`ChatModel`, so tests, demos and replay can swap in the
scripted model without touching HTTP. Guards and selectors that ask a model
for JSON read its answer with the one strict parser here,
:func:`strict_json_object`: prose, duplicate keys, NaN, truncation and
non-objects are a :class:`~middleware.errors.VerdictParseError`, never a guess;
a score in such an answer is read with :func:`probability`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from middleware.errors import LLMError as LLMError  # re-exported: callers catch it here
from middleware.errors import VerdictParseError

# A verdict is a few hundred characters; more is not a verdict, and no more than this
# of an answer is kept for the audit (a hostile server can send megabytes).
MAX_ANSWER_CHARS = 20_000
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ModelSettings:
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float = 30.0
    model: str | None = None  # overrides the client's default model for one call
    response_format: dict[str, Any] | None = None  # e.g. a JSON schema for verdicts


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)


# What :meth:`ChatModel.stream` yields: a piece of text, or the closing Completion.
Delta = str | Completion


class ChatModel(Protocol):
    """Anything that can complete a chat. ``name`` is the default model name.

    ``offline`` is true for a model that cannot judge anything (the echo model):
    LLM guards on it report ``skipped`` instead of pretending to pass or fail.
    """

    name: str

    @property
    def offline(self) -> bool: ...

    async def complete(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        """The reply as it is generated: text pieces, then one :class:`Completion` last
        (the whole text, the model and the usage). Closing the iterator early (or
        cancelling the task reading it) ends the request, as cancelling ``complete`` does."""
        ...


async def stream_whole(completion: Completion) -> AsyncIterator[Delta]:
    """A finished completion as a stream of one piece (models that cannot stream)."""
    if completion.text:
        yield completion.text
    yield completion


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for strict JSON-schema output."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, repeated))}")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")


def strict_json_object(text: str, *, fenced: bool = False) -> dict[str, Any]:
    """``text`` as exactly one JSON object, or :class:`VerdictParseError` (``raw`` = text).

    ``fenced`` accepts one markdown fence around the whole answer (still only the
    object): guards may prompt a model that has no JSON mode, and such models fence.
    """
    if len(text) > MAX_ANSWER_CHARS:  # before stripping: whitespace is length too
        raise VerdictParseError(f"reply too long ({len(text)} characters)", text)
    body = text.strip()
    if not body:
        raise VerdictParseError("empty reply", text)
    if fenced and (match := _FENCE.match(body)):
        body = match.group(1).strip()
    if not body.startswith("{"):
        raise VerdictParseError("reply is not a JSON object", text)
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise VerdictParseError(f"reply is not valid JSON ({exc.msg})", text) from None
    except RecursionError:
        raise VerdictParseError("reply is nested too deeply", text) from None
    except ValueError as exc:  # from the hooks: duplicate keys, NaN/Infinity
        raise VerdictParseError(str(exc), text) from None
    if not isinstance(value, dict):
        raise VerdictParseError("reply is not a JSON object", text)
    return value


def clip(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """``text`` as the audit keeps it: at most ``limit`` characters, then how many more."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}[… {len(text) - limit} more characters]"


def probability(value: object) -> float | None:
    """``value`` as a probability (a JSON number from 0 to 1), or None if it is not one.

    Ranges are compared before anything converts the number: JSON integers are
    unbounded, and ``math.isfinite`` or ``float`` of ``1`` + 400 zeros raises.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if 0 <= value <= 1 else None


def quote_value(value: object, limit: int = 40) -> str:
    """A bad value as an error message quotes it: its repr, cut to ``limit`` characters."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "a huge number"
    return text if len(text) <= limit else text[: limit - 1] + "…"
