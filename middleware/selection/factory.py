"""Builds the selector for a ``selection`` method from plain values, cached.

Channels may override ``best_of``, ``selection`` and ``criteria`` at run time,
so the application rebuilds its policy per channel; this factory makes that
cheap by returning the same selector object for the same parameters.

The fallback chains (each ends in ``first``, which cannot fail):

- ``judge``    -> ``first``. A judge that errs or cannot be parsed is usually
  the judge model misbehaving; asking the same model for criteria scores would
  double the selection latency for a likely second failure.
- ``criteria`` -> ``first``.
- ``vote``     -> ``judge`` -> ``first`` (only with ``on_low_confidence =
  "fallback"``; with ``"unsure"`` a split vote answers with ``unsure_reply``).
  Disagreeing answers are exactly what a judge is for.
- ``first``    -> the fastest safe candidate (the pipeline normally runs
  ``first`` itself, cancelling the slower candidates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from middleware.errors import SelectionConfigError
from middleware.llm.model import ChatModel
from middleware.selection.criteria import CriteriaSelector
from middleware.selection.judge import JudgeSelector
from middleware.selection.selector import FallbackChain, FirstSelector, Selector
from middleware.selection.vote import VoteSelector

METHODS = ("first", "judge", "criteria", "vote")
_CACHE_SIZE = 128

_cache: dict[tuple[object, ...], Selector] = {}


def build_selector(
    *,
    method: str,
    model: ChatModel,
    timeout_s: float,
    criteria: Sequence[str] = ("accuracy", "helpfulness", "tone"),
    weights: Mapping[str, float] | None = None,
    min_confidence: float = 0.5,
    on_low_confidence: Literal["unsure", "fallback"] = "unsure",
    unsure_reply: str = "I'm not sure about this one; my answers disagreed.",
    seed: int | None = None,
) -> Selector:
    """The selector for ``method``; ``model`` judges and scores, each call under ``timeout_s``.

    Raises :class:`~middleware.errors.SelectionConfigError` (a ValueError) for an
    unknown method or inconsistent criteria/weights, naming the offending value.
    """
    if method not in METHODS:
        raise SelectionConfigError(
            f"unknown selection {method!r}; expected one of {', '.join(METHODS)}"
        )
    crit = tuple(criteria)
    weight_items = tuple(sorted((weights or {}).items()))
    if method == "criteria":
        check_criteria(crit, dict(weight_items))
    # Keyed by id(model): the cached selector holds the model, so the id stays unique.
    key = (
        method,
        id(model),
        crit,
        weight_items,
        min_confidence,
        on_low_confidence,
        unsure_reply,
        timeout_s,
        seed,
    )
    cached = _cache.get(key)
    if cached is not None:
        return cached
    selector = _build(
        method,
        model,
        crit,
        dict(weight_items),
        min_confidence,
        on_low_confidence,
        unsure_reply,
        timeout_s,
        seed,
    )
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    _cache[key] = selector
    return selector


def _build(
    method: str,
    model: ChatModel,
    criteria: tuple[str, ...],
    weights: dict[str, float],
    min_confidence: float,
    on_low_confidence: Literal["unsure", "fallback"],
    unsure_reply: str,
    timeout_s: float,
    seed: int | None,
) -> Selector:
    if method == "first":
        return FirstSelector()
    judge = JudgeSelector(model, timeout_s=timeout_s, seed=seed)
    if method == "judge":
        return FallbackChain([judge, FirstSelector()])
    if method == "criteria":
        scorer = CriteriaSelector(model, criteria=criteria, weights=weights, timeout_s=timeout_s)
        return FallbackChain([scorer, FirstSelector()])
    vote = VoteSelector(
        min_confidence=min_confidence,
        on_low_confidence=on_low_confidence,
        unsure_reply=unsure_reply,
    )
    return FallbackChain([vote, judge, FirstSelector()])


def check_criteria(criteria: tuple[str, ...], weights: Mapping[str, float]) -> None:
    """Raise SelectionConfigError unless ``criteria`` and ``weights`` score usably (for config)."""
    if not criteria:
        raise SelectionConfigError("criteria selection needs at least one criterion")
    blank = [c for c in criteria if not c.strip()]
    if blank or len(set(criteria)) != len(criteria):
        raise SelectionConfigError("criteria must be non-empty and unique")
    unknown = sorted(set(weights) - set(criteria))
    if unknown:
        raise SelectionConfigError(f"criteria_weights name unknown criteria: {', '.join(unknown)}")
    bad = sorted(k for k, w in weights.items() if not math.isfinite(w) or w < 0)
    if bad:
        raise SelectionConfigError(f"criteria_weights must be finite and >= 0: {', '.join(bad)}")
    if all(weights.get(c, 1.0) == 0 for c in criteria):
        raise SelectionConfigError(
            "criteria_weights are all zero; at least one criterion must count"
        )
