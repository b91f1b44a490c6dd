"""Builds guard objects from their configuration, one builder per ``kind``.

LLM-backed guards get their model through a :class:`ModelFactory` supplied by
the application, so this module stays free of provider and secret handling.
The moderation guard needs the moderations endpoint rather than a chat
model: a factory that also is a :class:`ModerationSource` (or an
:class:`OpenAIClientSource`, like the bot's model provider) supplies it; a
plain factory whose model is offline gets an offline (skipping) guard.
``ensemble`` guards need the other guards' configs: pass them as ``all_configs``.

Guard modules are imported inside the builders, so importing this module is
cheap; in particular scikit-learn (the profanity model) loads at the first
``profanity`` build only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from middleware.errors import GuardConfigError
from middleware.guards.config import EnsembleGuardConfig, GuardConfigBase, MaxLengthGuardConfig
from middleware.guards.guard import Guard
from middleware.guards.max_length import MaxLengthGuard
from middleware.llm.model import ChatModel

if TYPE_CHECKING:
    from middleware.guards.openai_moderation import ModerationClient


class ModelFactory(Protocol):
    """Returns the chat model for a guard: the default one, or per-guard overrides."""

    def __call__(self, *, model: str | None = None, base_url: str | None = None) -> ChatModel: ...


@runtime_checkable
class ModerationSource(Protocol):
    """A factory that supplies moderation clients (None: no provider, offline)."""

    def moderation_client(self, *, base_url: str | None = None) -> ModerationClient | None: ...


@runtime_checkable
class OpenAIClientSource(Protocol):
    """A factory that supplies the raw ``AsyncOpenAI`` client (None: offline)."""

    def openai_client(self, base_url: str | None = None) -> Any: ...


Builder = Callable[[Any, ModelFactory], Guard]
Configs = Sequence[GuardConfigBase] | Mapping[str, GuardConfigBase]


def _llm_judge(cfg: Any, models: ModelFactory) -> Guard:
    from middleware.guards.llm_judge import LLMJudgeGuard

    return LLMJudgeGuard(cfg, models(model=cfg.model, base_url=cfg.base_url))


def _llama_guard(cfg: Any, models: ModelFactory) -> Guard:
    from middleware.guards.llama_guard import LlamaGuard

    return LlamaGuard(cfg, models(model=cfg.model, base_url=cfg.base_url))


def moderation_client_for(models: ModelFactory, base_url: str | None) -> ModerationClient | None:
    """The factory's moderation client, or None when it has no provider (offline)."""
    from middleware.guards.openai_moderation import OpenAIModeration

    if isinstance(models, ModerationSource):
        return models.moderation_client(base_url=base_url)
    if isinstance(models, OpenAIClientSource):
        client = models.openai_client(base_url)
        return OpenAIModeration(client) if client is not None else None
    if models(base_url=base_url).offline:
        return None
    raise GuardConfigError("the model factory offers no moderation client (moderation_client)")


def _openai_moderation(cfg: Any, models: ModelFactory) -> Guard:
    from middleware.guards.openai_moderation import OpenAIModerationGuard

    return OpenAIModerationGuard(cfg, moderation_client_for(models, cfg.base_url))


def _profanity(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.profanity import ProfanityGuard

    return ProfanityGuard(cfg)


def _pii(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.pii import PIIGuard

    return PIIGuard(cfg)


def _secrets(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.secrets import SecretsGuard

    return SecretsGuard(cfg)


def _prompt_injection(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.prompt_injection import PromptInjectionGuard

    return PromptInjectionGuard(cfg)


def _blocklist(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.blocklist import BlocklistGuard

    return BlocklistGuard(cfg)


def _classifier(cfg: Any, _models: ModelFactory) -> Guard:
    from middleware.guards.classifier import ClassifierGuard

    return ClassifierGuard(cfg)


BUILDERS: dict[str, Builder] = {
    "max_length": lambda cfg, _models: MaxLengthGuard(cfg),
    "llm_judge": _llm_judge,
    "llama_guard": _llama_guard,
    "openai_moderation": _openai_moderation,
    "profanity": _profanity,
    "pii": _pii,
    "secrets": _secrets,
    "prompt_injection": _prompt_injection,
    "blocklist": _blocklist,
    "classifier": _classifier,
    # "ensemble" is built by build_guard itself: it needs the other configs.
}


def _by_name(all_configs: Configs | None) -> dict[str, GuardConfigBase]:
    if all_configs is None:
        return {}
    if isinstance(all_configs, Mapping):
        return dict(all_configs)
    return {c.name: c for c in all_configs}


def build_guard(
    cfg: GuardConfigBase, models: ModelFactory, *, all_configs: Configs | None = None
) -> Guard:
    """Build one guard. ``all_configs`` (every [[guards]] table) is needed for ensembles."""
    return _build(cfg, models, _by_name(all_configs), ())


def _build(
    cfg: GuardConfigBase,
    models: ModelFactory,
    by_name: dict[str, GuardConfigBase],
    path: tuple[str, ...],
) -> Guard:
    if isinstance(cfg, EnsembleGuardConfig):
        from middleware.guards.voting import EnsembleGuard

        members: list[tuple[GuardConfigBase, Guard]] = []
        for name in cfg.members:
            member = by_name.get(name)
            if member is None:
                raise GuardConfigError(f"ensemble {cfg.name!r}: no guard named {name!r}")
            if name in path or name == cfg.name:
                raise GuardConfigError(f"ensemble {cfg.name!r}: cycle through {name!r}")
            members.append((member, _build(member, models, by_name, (*path, cfg.name))))
        return EnsembleGuard(cfg, members)
    builder = BUILDERS.get(cfg.kind)
    if builder is None:
        raise GuardConfigError(f"guard {cfg.name!r}: unknown kind {cfg.kind!r}")
    return builder(cfg, models)


def guard_cache_key(cfg: GuardConfigBase, all_configs: Configs | None = None) -> str:
    """A key that changes when the guard's config or any of its members' configs change."""
    by_name = _by_name(all_configs)
    parts = [cfg.model_dump(mode="json")]
    seen = {cfg.name}
    queue = [cfg]
    while queue:
        current = queue.pop(0)
        names = current.members if isinstance(current, EnsembleGuardConfig) else []
        for name in names:
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            parts.append(by_name[name].model_dump(mode="json"))
            queue.append(by_name[name])
    return json.dumps(parts, sort_keys=True)


__all__ = [
    "BUILDERS",
    "MaxLengthGuardConfig",
    "ModelFactory",
    "ModerationSource",
    "OpenAIClientSource",
    "build_guard",
    "guard_cache_key",
    "moderation_client_for",
]
