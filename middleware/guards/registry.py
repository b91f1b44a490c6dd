"""Builds guard objects from their configuration, one builder per ``kind``.

LLM-backed guards get their model through a :class:`ModelFactory` supplied by
the application, so this module stays free of provider and secret handling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from middleware.guards.base import Guard
from middleware.guards.config import GuardConfigBase, MaxLengthGuardConfig
from middleware.guards.max_length import MaxLengthGuard
from middleware.llm.base import ChatModel


class ModelFactory(Protocol):
    """Returns the chat model for a guard: the default one, or per-guard overrides."""

    def __call__(self, *, model: str | None = None, base_url: str | None = None) -> ChatModel: ...


Builder = Callable[[Any, ModelFactory], Guard]

BUILDERS: dict[str, Builder] = {
    "max_length": lambda cfg, _models: MaxLengthGuard(cfg),
}


def build_guard(cfg: GuardConfigBase, models: ModelFactory) -> Guard:
    kind = getattr(cfg, "kind", None)
    builder = BUILDERS.get(str(kind))
    if builder is None:
        raise ValueError(f"guard {cfg.name!r}: unknown kind {kind!r}")
    return builder(cfg, models)


__all__ = ["BUILDERS", "MaxLengthGuardConfig", "ModelFactory", "build_guard"]
