"""Configuration of the LLM guard kinds: ``llm_judge``, ``openai_moderation``, ``llama_guard``.

They share the model-facing options (a model, a server, k runs voting on a
quorum); :mod:`.config` joins them with the other kinds into one union.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from middleware.guards.config_base import GuardConfigBase


class _VotingFields(BaseModel):
    """``votes``/``quorum`` for LLM kinds: k runs of the same judge, block on m unsafe."""

    votes: int = Field(
        default=1, ge=1, le=15, description="runs of this judge in parallel (1 = no voting)"
    )
    quorum: int | None = Field(
        default=None, ge=1, description="unsafe runs needed to block (default: a majority)"
    )

    @model_validator(mode="after")
    def _check_quorum(self) -> Any:
        if self.quorum is not None and self.quorum > self.votes:
            raise ValueError(f"quorum {self.quorum} is more than votes {self.votes}")
        return self

    def effective_quorum(self) -> int:
        return self.quorum if self.quorum is not None else self.votes // 2 + 1


class LLMJudgeGuardConfig(GuardConfigBase, _VotingFields):
    kind: Literal["llm_judge"]
    model: str | None = Field(default=None, description="model name; default: [llm] model")
    base_url: str | None = Field(default=None, description="server; default: [llm] base_url")
    prompt: str | None = Field(
        default=None,
        description="system prompt replacing the built-in one; {categories} is filled in",
    )
    categories: list[str] = Field(
        default_factory=lambda: [
            "violence",
            "hate",
            "harassment",
            "self_harm",
            "sexual",
            "illegal",
            "weapons",
            "prompt_injection",
        ],
        min_length=1,
        description="categories the judge is asked about",
    )
    response_format: Literal["json_schema", "json_object", "none"] = Field(
        default="json_schema",
        description="structured output requested from the server (none: prompt only)",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="default 0, or 0.7 when votes > 1"
    )
    max_tokens: int = Field(default=300, gt=0, le=4000, description="cap on the verdict's tokens")
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="unset: the judge's `unsafe` decides; set: a score >= threshold also blocks",
    )

    def run_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.7 if self.votes > 1 else 0.0


class OpenAIModerationGuardConfig(GuardConfigBase):
    kind: Literal["openai_moderation"]
    model: str = Field(default="omni-moderation-latest", description="moderation model")
    base_url: str | None = Field(default=None, description="server; default: [llm] base_url")
    threshold: float = Field(
        default=0.5, ge=0, le=1, description="threshold of categories not in `thresholds`"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description='per-category thresholds, e.g. {violence = 0.5, "self-harm" = 0.2}',
    )
    ignore: list[str] = Field(default_factory=list, description="categories never counted")

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, t in v.items() if not 0 <= t <= 1]
        if bad:
            raise ValueError(f"thresholds must be between 0 and 1: {', '.join(bad)}")
        return v


LLAMA_GUARD_CODES = tuple(f"S{i}" for i in range(1, 15))


class LlamaGuardGuardConfig(GuardConfigBase, _VotingFields):
    kind: Literal["llama_guard"]
    model: str = Field(
        default="llama-guard3", description="model name on the server (Llama Guard 3 or 4)"
    )
    base_url: str | None = Field(default=None, description="server; default: [llm] base_url")
    exclude: list[str] = Field(
        default_factory=list, description='hazard codes not counted as unsafe, e.g. ["S6", "S8"]'
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="default 0, or 0.7 when votes > 1"
    )

    @field_validator("exclude")
    @classmethod
    def _check_codes(cls, v: list[str]) -> list[str]:
        codes = [c.strip().upper() for c in v]
        unknown = [c for c in codes if c not in LLAMA_GUARD_CODES]
        if unknown:
            raise ValueError(f"unknown Llama Guard codes {unknown}; use S1..S14")
        return codes

    def run_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.7 if self.votes > 1 else 0.0
