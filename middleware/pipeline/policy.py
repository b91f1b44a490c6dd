"""What the pipeline needs to answer one message, resolved for its channel.

The application builds a :class:`PipelinePolicy` per request from
`config.toml`, admin runtime overrides and channel settings; the pipeline
itself holds no configuration, which keeps it trivially reusable by replay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from middleware.guards.config import GuardConfigBase
from middleware.guards.guard import Guard
from middleware.llm.model import ChatModel
from middleware.selection.selector import Selector
from middleware.types import Outcome, Stage, Verdict

_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True, slots=True)
class ConfiguredGuard:
    config: GuardConfigBase
    guard: Guard


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per one million tokens."""

    input_per_m: float = 0.0
    output_per_m: float = 0.0


@dataclass(frozen=True)
class PipelinePolicy:
    model: ChatModel
    guards: tuple[ConfiguredGuard, ...] = ()
    system_prompt: str = "You are a helpful assistant."
    temperature: float = 0.7
    timeout_s: float = 30.0
    max_tokens: int | None = None
    best_of: int = 1
    temperatures: tuple[float, ...] = ()  # per candidate; empty = `temperature` for all
    models: tuple[str, ...] = ()  # per candidate model names; empty = the model's default
    selection: str = "judge"  # first | judge | criteria | vote (used when best_of > 1)
    selector: Selector | None = None
    refusal: str = "Sorry, I can't help with that."
    error_reply: str = "Sorry, I couldn't produce a reply right now ({reason}). Please try again."
    max_input_chars: int = 8000
    pricing: Mapping[str, Price] = field(default_factory=dict)
    fingerprint: str = ""

    def guards_for(self, stage: Stage, channel_id: str) -> list[ConfiguredGuard]:
        """The enabled guards of ``stage`` that apply in this channel."""
        return [g for g in self.guards if g.config.applies(stage, channel_id)]

    def length_verdict(self, text: str) -> Verdict | None:
        """The pipeline's own length check (pseudo-guard ``max_input_chars``), or None."""
        if len(text) <= self.max_input_chars:
            return None
        return Verdict(
            guard="max_input_chars",
            stage=Stage.INPUT,
            outcome=Outcome.BLOCK,
            blocking=True,
            category="length",
            reason=f"message has {len(text)} characters (limit {self.max_input_chars})",
        )

    def temperature_for(self, index: int) -> float:
        if not self.temperatures:
            return self.temperature
        return self.temperatures[index % len(self.temperatures)]

    def model_for(self, index: int) -> str | None:
        if not self.models:
            return None
        return self.models[index % len(self.models)]

    def cost_usd(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price = self.pricing.get(model)
        if price is None:
            # Providers answer with a dated snapshot ("gpt-4o-mini-2024-07-18") of the
            # model the price table names ("gpt-4o-mini").
            price = self.pricing.get(_SNAPSHOT.sub("", model))
        if price is None:
            return 0.0
        return (tokens_in * price.input_per_m + tokens_out * price.output_per_m) / 1_000_000
