"""Configuration of guards: one ``[[guards]]`` table each, validated strictly.

Every kind has its own model (a discriminated union on ``kind``), so an option
that does not belong to a kind, or a typo, is an error naming the key. The
policy fields shared by every kind live on :class:`GuardConfigBase`
(:mod:`.config_base`); the LLM kinds are in :mod:`.llm_config`, re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from middleware.errors import GuardConfigError
from middleware.guards.config_base import GuardConfigBase as GuardConfigBase
from middleware.guards.llm_config import LLAMA_GUARD_CODES as LLAMA_GUARD_CODES
from middleware.guards.llm_config import LlamaGuardGuardConfig as LlamaGuardGuardConfig
from middleware.guards.llm_config import LLMJudgeGuardConfig as LLMJudgeGuardConfig
from middleware.guards.llm_config import OpenAIModerationGuardConfig as OpenAIModerationGuardConfig


class MaxLengthGuardConfig(GuardConfigBase):
    kind: Literal["max_length"]
    max_chars: int = Field(default=4000, gt=0, description="longer texts are unsafe")


class ProfanityGuardConfig(GuardConfigBase):
    kind: Literal["profanity"]
    threshold: float = Field(
        default=0.9, ge=0, le=1, description="model probability at or above which it blocks"
    )
    allow_words: list[str] = Field(
        default_factory=list,
        description="words your community accepts (e.g. hell, damn); ignored when scoring",
    )
    deobfuscate: bool = Field(
        default=True, description="also score the text with leetspeak/homoglyphs undone"
    )


PIIKind = Literal["email", "phone", "card", "iban"]
PII_KINDS: tuple[PIIKind, ...] = ("email", "phone", "card", "iban")


# Regions whose national phone formats are recognised unless `regions` says otherwise
# (numbers written internationally, "+46 …", are recognised for every country): North
# America, Europe's larger economies, Oceania, India, Latin America's largest, Japan.
# On the tuned benign texts (logs, order numbers, hashes) these 33 block no more than
# the first 9 did (none), for about 0.01 ms per message.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = (
    "US", "CA", "GB", "IE", "AU", "NZ", "IN", "ZA", "DE", "AT", "CH", "FR", "BE", "LU", "NL",
    "ES", "PT", "IT", "SE", "NO", "DK", "FI", "PL", "CZ", "SK", "HU", "RO", "GR", "TR", "BR",
    "MX", "AR", "JP",
)  # fmt: skip


class PIIGuardConfig(GuardConfigBase):
    kind: Literal["pii"]
    detect: list[PIIKind] = Field(
        default_factory=lambda: list(PII_KINDS), min_length=1, description="what to look for"
    )
    regions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PHONE_REGIONS),
        description="ISO 3166 regions whose national phone formats count (e.g. SE for "
        '"08-31 58 43"); international "+…" numbers are always found',
    )

    @field_validator("regions")
    @classmethod
    def _check_regions(cls, v: list[str]) -> list[str]:
        import phonenumbers

        regions = [r.upper() for r in v]
        unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"unknown phone regions: {', '.join(unknown)}")
        return regions


class SecretsGuardConfig(GuardConfigBase):
    kind: Literal["secrets"]


class PromptInjectionGuardConfig(GuardConfigBase):
    kind: Literal["prompt_injection"]
    threshold: float = Field(
        default=0.5, ge=0, le=1, description="combined pattern score at or above which it blocks"
    )
    extra_patterns: list[str] = Field(
        default_factory=list, description="more regexes (matched on normalised, lowercased text)"
    )
    extra_weight: float = Field(
        default=0.6, gt=0, le=1, description="score contributed by one extra pattern"
    )

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        return _check_regexes(v)


class BlocklistGuardConfig(GuardConfigBase):
    kind: Literal["blocklist"]
    words: list[str] = Field(
        default_factory=list, description="whole words or phrases, matched after normalising"
    )
    patterns: list[str] = Field(
        default_factory=list, description="regexes, matched case-insensitively after normalising"
    )

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        return _check_regexes(v)

    @field_validator("words")
    @classmethod
    def _non_blank(cls, v: list[str]) -> list[str]:
        if any(not w.strip() for w in v):
            raise ValueError("words must not be blank")
        return v


class EnsembleGuardConfig(GuardConfigBase):
    kind: Literal["ensemble"]
    members: list[str] = Field(
        min_length=2, description="names of other [[guards]] run in parallel as voters"
    )
    quorum: int | None = Field(
        default=None, ge=1, description="members that must say unsafe to block (default: majority)"
    )

    @model_validator(mode="after")
    def _check_quorum(self) -> EnsembleGuardConfig:
        if len(set(self.members)) != len(self.members):
            raise ValueError("members must not repeat")
        if self.quorum is not None and self.quorum > len(self.members):
            raise ValueError(f"quorum {self.quorum} is more than {len(self.members)} members")
        return self

    def effective_quorum(self) -> int:
        return self.quorum if self.quorum is not None else len(self.members) // 2 + 1


class ClassifierGuardConfig(GuardConfigBase):
    """A text classification model on an inference server (see middleware/guards/classifier.py)."""

    kind: Literal["classifier"]
    api: Literal["tei", "vllm"] = Field(
        description="tei: text-embeddings-inference POST /predict; vllm: POST /classify"
    )
    url: str = Field(
        pattern=r"^https?://\S+$", description="the server's base URL, e.g. http://localhost:8080"
    )
    model: str | None = Field(default=None, description="vllm: the served model name (required)")
    class_labels: list[str] | None = Field(
        default=None,
        min_length=2,
        description="vllm: label names in the model's class order (its id2label); required "
        "there, since /classify returns probabilities by class index",
    )
    labels: dict[str, str] = Field(
        min_length=1,
        description="unsafe labels -> the category they report, e.g. "
        '{LABEL_1 = "prompt_injection"}; labels not listed are safe',
    )
    threshold: float = Field(
        default=0.5, ge=0, le=1, description="probability at or above which an unsafe label blocks"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per-label thresholds overriding `threshold`"
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the server's API key (sent as "
        "a Bearer token); never the key itself",
    )
    truncate: bool = Field(
        default=False,
        description="tei: let the server cut texts longer than the model's context (the rest "
        "is then not screened); off: such texts are errors and follow on_error",
    )

    @model_validator(mode="after")
    def _check_labels(self) -> ClassifierGuardConfig:
        if self.api == "vllm" and (not self.model or not self.class_labels):
            raise ValueError('api = "vllm" needs `model` and `class_labels`')
        if self.api == "tei" and self.class_labels is not None:
            raise ValueError('`class_labels` is for api = "vllm"; TEI answers with label names')
        if self.class_labels is not None:
            if len(set(self.class_labels)) != len(self.class_labels):
                raise ValueError("class_labels must not repeat")
            unknown = sorted(set(self.labels) - set(self.class_labels))
            if unknown:
                raise ValueError(f"labels {unknown} are not in class_labels")
        stray = sorted(set(self.thresholds) - set(self.labels))
        if stray:
            raise ValueError(f"thresholds for {stray}, which are not unsafe labels in `labels`")
        bad = sorted(k for k, t in self.thresholds.items() if not 0 <= t <= 1)
        if bad:
            raise ValueError(f"thresholds must be between 0 and 1: {', '.join(bad)}")
        return self

    def threshold_for(self, label: str) -> float:
        return self.thresholds.get(label, self.threshold)


def _check_regexes(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return patterns


def check_guard_references(guards: Sequence[GuardConfigBase]) -> None:
    """Ensembles must name existing guards, not themselves, and form no cycle.

    Raises :class:`~middleware.errors.GuardConfigError` (a ValueError) naming the problem.
    """
    by_name = {g.name: g for g in guards}

    def visit(name: str, path: tuple[str, ...]) -> None:
        cfg = by_name[name]
        members = cfg.members if isinstance(cfg, EnsembleGuardConfig) else []
        for member in members:
            if member not in by_name:
                raise GuardConfigError(f"ensemble {name!r}: no guard named {member!r}")
            if member == name:
                raise GuardConfigError(f"ensemble {name!r} cannot contain itself")
            if member in path:
                raise GuardConfigError(f"ensemble {name!r}: cycle through {member!r}")
            visit(member, (*path, name))

    for g in guards:
        visit(g.name, ())


GuardConfig = Annotated[
    MaxLengthGuardConfig
    | LLMJudgeGuardConfig
    | OpenAIModerationGuardConfig
    | LlamaGuardGuardConfig
    | ProfanityGuardConfig
    | PIIGuardConfig
    | SecretsGuardConfig
    | PromptInjectionGuardConfig
    | BlocklistGuardConfig
    | EnsembleGuardConfig
    | ClassifierGuardConfig,
    Field(discriminator="kind"),
]
