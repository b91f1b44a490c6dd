"""Turns an effective :class:`Config` into the pipeline's :class:`PipelinePolicy`.

Building guards can be costly (the profanity model, compiled patterns), so
guards are cached by their configuration and whole policies by the config's
fingerprint: a runtime setting change builds only what changed, and an
unchanged channel pays nothing per message.
"""

from __future__ import annotations

from typing import Any

from bot.config.providers import ModelProvider
from bot.config.schema import Config
from middleware.guards.registry import build_guard, guard_cache_key
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy, Price
from middleware.selection.factory import build_selector
from middleware.selection.selector import Selector


class PolicyBuilder:
    def __init__(self, models: ModelProvider) -> None:
        self.models = models
        self._guards: dict[str, ConfiguredGuard] = {}
        self._policies: dict[str, PipelinePolicy] = {}

    def guards(self, config: Config) -> tuple[ConfiguredGuard, ...]:
        built = []
        for cfg in config.guards:
            key = guard_cache_key(cfg, config.guards)  # ensembles: members' configs too
            if key not in self._guards:
                guard = build_guard(cfg, self.models, all_configs=config.guards)
                self._guards[key] = ConfiguredGuard(cfg, guard)
            built.append(self._guards[key])
        return tuple(built)

    def selector(self, config: Config) -> Selector | None:
        """The best-of-N selector for `selection` (None: the pipeline's `first`)."""
        p = config.pipeline
        judge = self.models(model=p.judge_model or config.llm.model)
        return build_selector(
            method=p.selection,
            model=judge,
            criteria=tuple(p.criteria),
            weights=dict(p.criteria_weights),
            min_confidence=p.min_confidence,
            on_low_confidence=p.on_low_confidence,
            unsure_reply=p.unsure_reply,
            timeout_s=config.llm.timeout_s,
        )

    def policy(self, config: Config, fingerprint: str | None = None) -> PipelinePolicy:
        fingerprint = fingerprint or config.fingerprint()
        cached = self._policies.get(fingerprint)
        if cached is not None:
            return cached
        p, llm = config.pipeline, config.llm
        temps: Any = p.temperatures
        policy = PipelinePolicy(
            model=self.models(model=llm.model),  # an admin may `set model` at runtime
            guards=self.guards(config),
            system_prompt=llm.system_prompt,
            temperature=llm.temperature,
            timeout_s=llm.timeout_s,
            max_tokens=llm.max_tokens,
            best_of=p.best_of,
            temperatures=tuple(temps)
            if isinstance(temps, list)
            else ()
            if temps is None
            else (float(temps),),
            models=tuple(p.models or ()),
            selection=p.selection,
            selector=self.selector(config) if p.best_of > 1 else None,
            refusal=p.refusal,
            error_reply=p.error_reply,
            max_input_chars=p.max_input_chars,
            pricing={
                name: Price(price.input_per_m, price.output_per_m)
                for name, price in config.pricing.items()
            },
            fingerprint=fingerprint,
        )
        if len(self._policies) > 256:  # channels with their own settings; keep it bounded
            self._policies.clear()
        self._policies[fingerprint] = policy
        return policy
