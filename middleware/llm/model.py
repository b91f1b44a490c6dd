"""The one-method protocol every chat model implements.

The pipeline, the LLM guards and the best-of-N judge all talk to models only
through :class:`ChatModel`, so tests, demos and replay can swap in the
scripted model without touching HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class LLMError(Exception):
    """A model call failed for a reason worth showing to an operator (never a secret)."""


class ChatModel(Protocol):
    """Anything that can complete a chat. ``name`` is the default model name."""

    name: str

    async def complete(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> Completion: ...
