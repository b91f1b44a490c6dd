"""The settable keys of runtime settings and how a typed value is read from chat text.

An admin types ``set guard.pii.threshold 0.8``; this module decides whether
that key may be set at all (only a short list: nothing touching secrets,
endpoints, the log or the admin list), reads the value strictly for the
field's type ("3" is an int, "3.0" is not; NaN is never a number), checks
the field's own range so the error can name it, masks any secret in a text
value, and applies overrides to a :class:`Config` through the same pydantic
schema as `config.toml`.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from bot.config.schema import Config, LLMConfig, PipelineConfig
from middleware.guards.config import GuardConfigBase
from middleware.masking import mask_text

# Plain keys -> (config section, field). Only these are settable: anything that
# touches secrets, endpoints, the log or the admin list stays in config.toml.
PLAIN_KEYS: dict[str, tuple[str, str]] = {
    "best_of": ("pipeline", "best_of"),
    "selection": ("pipeline", "selection"),
    "temperature": ("llm", "temperature"),
    "model": ("llm", "model"),
    "system_prompt": ("llm", "system_prompt"),
    "refusal": ("pipeline", "refusal"),
    "stream": ("pipeline", "stream"),  # `set stream false here`: whole replies in a channel
}
GUARD_FIELDS = ("threshold", "action", "on_error", "enabled", "stream")
SECTIONS: dict[str, type[LLMConfig | PipelineConfig]] = {
    "llm": LLMConfig,
    "pipeline": PipelineConfig,
}
MAX_TEXT_CHARS = 4000
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
_INT = re.compile(r"[+-]?\d{1,9}")
_FLOAT = re.compile(r"[+-]?(\d{1,9}(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?")
_TRUE, _FALSE = {"true", "on", "yes", "1"}, {"false", "off", "no", "0"}


class SettingError(ValueError):
    """A key or value an admin cannot set; the message says what is allowed."""


@dataclass(frozen=True, slots=True)
class SettingKey:
    """A parsed key: ``best_of`` or ``guard.<name>.<field>``."""

    name: str
    section: str  # "llm", "pipeline" or "guards"
    field: str
    guard: str | None = None


def parse_key(key: str, config: Config) -> SettingKey:
    if key in PLAIN_KEYS:
        section, field = PLAIN_KEYS[key]
        return SettingKey(key, section, field)
    if key.startswith("guard.") and key.count(".") >= 2:
        name, _, field = key[len("guard.") :].rpartition(".")
        if field not in GUARD_FIELDS:
            raise SettingError(
                f"unknown guard setting {field!r}; guards take: {', '.join(GUARD_FIELDS)}"
            )
        guard_config(config, name)  # raises for an unknown guard
        return SettingKey(key, "guards", field, guard=name)
    settable = ", ".join([*PLAIN_KEYS, *(f"guard.NAME.{f}" for f in GUARD_FIELDS)])
    raise SettingError(f"unknown setting {_short(key)!r}; settable keys: {settable}")


def guard_config(config: Config, name: str) -> GuardConfigBase:
    for cfg in config.guards:
        if cfg.name == name:
            return cfg
    names = ", ".join(g.name for g in config.guards) or "none configured"
    raise SettingError(f"unknown guard {_short(name)!r}; guards: {names}")


def current_value(config: Config, key: SettingKey) -> Any:
    if key.guard is not None:
        return getattr(guard_config(config, key.guard), key.field)
    return getattr(getattr(config, key.section), key.field)


def _field_info(config: Config, key: SettingKey) -> FieldInfo:
    if key.guard is not None:
        return type(guard_config(config, key.guard)).model_fields[key.field]
    return SECTIONS[key.section].model_fields[key.field]


def uses_threshold(cfg: GuardConfigBase) -> bool:
    """Kinds that score declare their own `threshold`; the base one is a placeholder."""
    for klass in type(cfg).__mro__:
        if klass is GuardConfigBase:
            return False
        if "threshold" in vars(klass).get("__annotations__", {}):
            return True
    return False


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _base_type(info: FieldInfo) -> Any:
    """``float | None`` -> ``float``; other annotations unchanged."""
    ann = info.annotation
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(ann) if a is not type(None))
    return ann


def allowed(info: FieldInfo) -> str:
    """Human wording of what a field accepts, from its type and constraints."""
    base = _base_type(info)
    if typing.get_origin(base) is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(base))
    if base is bool:
        return "true or false"
    lo: Any = None
    hi: Any = None
    lo_strict = hi_strict = False
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_strict = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_strict = m.lt, True
    noun = "a whole number" if base is int else "a number" if base is float else "text"
    if lo is not None and hi is not None:
        return f"{noun} from {lo}{' (exclusive)' if lo_strict else ''} to {hi}"
    if lo is not None:
        return f"{noun} {'above' if lo_strict else 'of at least'} {lo}"
    if hi is not None:
        return f"{noun} {'below' if hi_strict else 'of at most'} {hi}"
    return noun


def coerce(key: SettingKey, raw: str, config: Config) -> Any:
    """The typed value of ``raw`` for ``key``, strictly: "3" is an int, "3.0" is not."""
    info = _field_info(config, key)
    expected = allowed(info)
    bad = SettingError(f"{key.name}: {_short(raw)!r} is not valid; expected {expected}")
    if key.field == "threshold" and key.guard is not None:
        cfg = guard_config(config, key.guard)
        if not uses_threshold(cfg):
            raise SettingError(
                f"guard {key.guard!r} ({getattr(cfg, 'kind', '?')}) has no threshold to set"
            )
    value = _typed(key, raw, info, bad)
    # Built at run time from the field, so not a static type form; Any says so to mypy.
    field_type: Any = Annotated[info.annotation, info]
    try:  # the field's own constraints (ranges), so the error can name them
        TypeAdapter(field_type).validate_python(value, strict=True)
    except ValidationError:
        raise bad from None
    return value


def _typed(key: SettingKey, raw: str, info: FieldInfo, bad: SettingError) -> Any:
    base = _base_type(info)
    text = raw.strip()
    if typing.get_origin(base) is Literal:
        choices = {str(c).lower(): c for c in typing.get_args(base)}
        if text.lower() not in choices:
            raise bad
        return choices[text.lower()]
    if base is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad
    if base is int:
        if not _INT.fullmatch(text):
            raise bad
        return int(text)
    if base is float:
        if not _FLOAT.fullmatch(text) or not math.isfinite(float(text)):
            raise bad
        return float(text)
    if not text:
        raise SettingError(f"{key.name}: the value must not be empty")
    if len(raw) > MAX_TEXT_CHARS:
        raise SettingError(f"{key.name}: at most {MAX_TEXT_CHARS} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in raw):
        raise SettingError(f"{key.name}: control characters are not allowed")
    if key.name == "model" and not _MODEL_NAME.fullmatch(text):
        raise SettingError(
            "model: expected a model name such as gpt-4o-mini or llama3.1:8b "
            "(letters, digits and . _ : / @ + -, at most 200 characters)"
        )
    # A pasted key (`set refusal "... sk-proj-..."`) must not reach the settings table,
    # the admin trail or the answer: the value is masked like every text the bot stores.
    if key.name == "model":
        if mask_text(text) != text:
            raise SettingError("model: that is an API key, not a model name; keys stay in the env")
        return text
    return mask_text(raw)


def apply(config: Config, overrides: Mapping[str, Any]) -> Config:
    """``config`` with ``overrides`` applied, validated by the Config schema."""
    data = config.model_dump()
    for name, value in overrides.items():
        key = parse_key(name, config)
        if key.guard is not None:
            target = next(g for g in data["guards"] if g["name"] == key.guard)
            target[key.field] = value
        else:
            data[key.section][key.field] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][-2:])}: {e['msg']}" for e in exc.errors()
        )
        raise SettingError(f"not a valid configuration: {problems}") from None
