"""Runtime settings against a real SQLite decision log: strict values, layering, caching.

`RuntimeSettings` is what `GuardBot.effective_config` asks on every message,
so besides validation these tests pin the cache (same object until a change)
and that a stale stored row (its guard since removed from config.toml) is
skipped with a visible problem instead of breaking the bot at start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config.keys import SettingError
from bot.config.runtime import GLOBAL, RuntimeSettings, channel_scope
from bot.config.schema import Config
from middleware.decision_log import DecisionLog

HERE = channel_scope("slack", "C1")


def make_config(tmp_path: Path, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "log": {"path": str(tmp_path / "guardbot.db")},
        "guards": [
            {"name": "length", "kind": "max_length", "stage": "input", "max_chars": 40},
            {"name": "swears", "kind": "profanity", "threshold": 0.9},
            {"name": "judge", "kind": "llm_judge"},
        ],
    }
    data.update(extra)
    return Config.model_validate(data)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[DecisionLog]:
    decision_log = await DecisionLog.open(tmp_path / "guardbot.db")
    try:
        yield decision_log
    finally:
        await decision_log.close()


@pytest.fixture
async def settings(tmp_path: Path, log: DecisionLog) -> RuntimeSettings:
    runtime = RuntimeSettings(make_config(tmp_path), log)
    await runtime.load()
    return runtime


async def put(settings: RuntimeSettings, scope: str, key: str, raw: str) -> Any:
    parsed, value = settings.validate(scope, key, raw)
    return await settings.write(
        scope, parsed.name, value, actor="console:me", platform="console", channel_id="c",
        command=f"set {key} {raw}",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("best_of", "99", "expected a whole number from 1 to 8"),
        ("best_of", "3.0", "expected a whole number from 1 to 8"),
        ("best_of", "", "expected a whole number"),
        ("temperature", "nan", "expected a number from 0 to 2"),
        ("temperature", "2.5", "expected a number from 0 to 2"),
        ("temperature", "1e400", "expected a number from 0 to 2"),
        ("selection", "best", "one of: first, judge, criteria, vote"),
        ("guard.length.enabled", "maybe", "true or false"),
        ("guard.length.action", "explode", "one of: block, flag, redact"),
        ("guard.length.on_error", "ignore", "one of: block, allow"),
        ("guard.swears.threshold", "1.5", "a number from 0 to 1"),
        ("guard.swears.threshold", "high", "a number from 0 to 1"),
        ("guard.length.threshold", "0.5", "has no threshold"),
        ("guard.nope.threshold", "0.5", "unknown guard 'nope'; guards: length, swears, judge"),
        ("guard.length.max_chars", "5", "unknown guard setting 'max_chars'"),
        ("api_key_env", "X", "unknown setting 'api_key_env'"),
        ("log.path", "/tmp/x", "unknown setting"),
        ("model", "gpt 4; rm -rf", "expected a model name"),
        ("refusal", "   ", "must not be empty"),
        ("system_prompt", "a\x07b", "control characters"),
        ("system_prompt", "x" * 4001, "at most 4000 characters"),
    ],
)
async def test_bad_values_are_rejected_with_the_allowed_range(
    settings: RuntimeSettings, log: DecisionLog, key: str, raw: str, message: str
) -> None:
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.validate(GLOBAL, key, raw)
    assert await log.settings() == []


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("best_of", "3", 3),
        ("best_of", "+8", 8),
        ("temperature", "0", 0.0),
        ("temperature", ".5", 0.5),
        ("selection", "VOTE", "vote"),
        ("guard.length.enabled", "off", False),
        ("guard.swears.threshold", "0.75", 0.75),
        ("guard.judge.threshold", "0.3", 0.3),
        ("model", "llama3.1:8b", "llama3.1:8b"),
        ("refusal", "Désolé, je ne peux pas — 🙅", "Désolé, je ne peux pas — 🙅"),
    ],
)
def test_good_values_are_typed_strictly(
    settings: RuntimeSettings, key: str, raw: str, value: Any
) -> None:
    _, parsed = settings.validate(GLOBAL, key, raw)
    assert parsed == value and type(parsed) is type(value)


async def test_channel_wins_over_global_which_wins_over_config(settings: RuntimeSettings) -> None:
    base, base_fp = settings.effective("slack", "C1")
    assert base.pipeline.best_of == 1 and base_fp == settings.base.fingerprint()
    await put(settings, GLOBAL, "best_of", "3")
    await put(settings, HERE, "best_of", "5")
    await put(settings, HERE, "guard.length.enabled", "false")
    here, here_fp = settings.effective("slack", "C1")
    other, other_fp = settings.effective("slack", "C2")
    discord_same_id, _ = settings.effective("discord", "C1")
    assert here.pipeline.best_of == 5 and here.guards[0].enabled is False
    assert other.pipeline.best_of == 3 and other.guards[0].enabled is True
    assert discord_same_id.pipeline.best_of == 3
    assert len({base_fp, here_fp, other_fp}) == 3
    assert settings.base.pipeline.best_of == 1  # config.toml's copy is never mutated


async def test_effective_config_is_cached_until_a_change(settings: RuntimeSettings) -> None:
    await put(settings, HERE, "temperature", "0.2")
    first = settings.effective("slack", "C1")
    assert settings.effective("slack", "C1") is first
    assert settings.effective("slack", "C9") is settings.effective("slack", "C8")
    await put(settings, HERE, "temperature", "0.3")
    second = settings.effective("slack", "C1")
    assert second is not first and second[0].llm.temperature == 0.3


async def test_write_returns_old_value_and_none_deletes(
    settings: RuntimeSettings, log: DecisionLog
) -> None:
    assert await put(settings, GLOBAL, "refusal", "No.") is None
    assert await put(settings, GLOBAL, "refusal", "Nope.") == "No."
    old = await settings.write(
        GLOBAL, "refusal", None, actor="console:me", platform="console", channel_id="c",
        command="reset refusal",
    )  # fmt: skip
    assert old == "Nope."
    assert await log.settings() == []
    assert settings.effective("slack", "C1")[0].pipeline.refusal == settings.base.pipeline.refusal
    trail = await log.admin_actions()
    assert [(a.key, a.old, a.new) for a in reversed(trail)] == [
        ("refusal", None, "No."),
        ("refusal", "No.", "Nope."),
        ("refusal", "Nope.", None),
    ]


async def test_settings_survive_a_new_instance(tmp_path: Path, settings: RuntimeSettings) -> None:
    await put(settings, HERE, "guard.swears.threshold", "0.4")
    fresh = RuntimeSettings(make_config(tmp_path), settings.store)
    assert fresh.effective("slack", "C1")[0].guards[1].threshold == 0.9  # not loaded yet
    await fresh.ensure_loaded()
    assert fresh.effective("slack", "C1")[0].guards[1].threshold == 0.4


async def test_a_stale_row_is_skipped_and_reported(tmp_path: Path, log: DecisionLog) -> None:
    runtime = RuntimeSettings(make_config(tmp_path), log)
    await runtime.load()
    await put(runtime, GLOBAL, "guard.swears.enabled", "false")
    await put(runtime, GLOBAL, "best_of", "2")
    # The operator later removes the guard from config.toml and restarts.
    smaller = make_config(tmp_path, guards=[{"name": "length", "kind": "max_length"}])
    restarted = RuntimeSettings(smaller, log)
    await restarted.load()
    config, _ = restarted.effective("console", "console")
    assert config.pipeline.best_of == 2
    assert list(restarted.problems) == [(GLOBAL, "guard.swears.enabled")]
    assert "unknown guard 'swears'" in restarted.problems[(GLOBAL, "guard.swears.enabled")]


async def test_validation_uses_the_scope_it_will_apply_to(settings: RuntimeSettings) -> None:
    # selection is checked against the whole config, so a channel value is validated
    # on top of the channel's effective config, and scopes do not leak into each other.
    await put(settings, HERE, "selection", "vote")
    key, value = settings.validate(GLOBAL, "selection", "first")
    assert (key.name, value) == ("selection", "first")
    assert settings.effective_for_scope(GLOBAL).pipeline.selection == "judge"
    assert settings.effective_for_scope(HERE).pipeline.selection == "vote"
