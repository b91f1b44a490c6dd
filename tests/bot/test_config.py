"""Configuration: strict keys with line numbers, file selection, provider choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config.providers import ModelProvider
from bot.config.schema import ConfigError, default_config_text, load_config, parse_config
from middleware.llm.echo import EchoModel
from middleware.llm.openai_model import OpenAIChatModel

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_the_packaged_default() -> None:
    assert (REPO / "config.toml").read_text() == default_config_text()
    config = load_config(REPO / "config.toml")
    assert config.llm.provider == "auto"


def test_unknown_key_names_key_and_line() -> None:
    text = "[llm]\nmodel = 'x'\ntemprature = 0.3\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "my.toml")
    assert "my.toml" in str(err.value)
    assert "llm.temprature (line 3): unknown key" in str(err.value)


def test_unknown_key_inside_a_guard_table_names_its_line() -> None:
    text = (
        "[[guards]]\nname = 'a'\nkind = 'max_length'\n"
        "[[guards]]\nname = 'b'\nkind = 'max_length'\nmax_charz = 3\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.toml")
    assert "max_charz (line 7): unknown key" in str(err.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[llm\nmodel='x'", "invalid TOML"),
        ("[pipeline]\nbest_of = 99\n", "pipeline.best_of (line 2)"),
        ("[llm]\ntemperature = 'hot'\n", "llm.temperature (line 2)"),
        ("[[guards]]\nname = 'x'\nkind = 'nope'\n", "guards.0"),
        (
            "[[guards]]\nname='a'\nkind='max_length'\n[[guards]]\nname='a'\nkind='max_length'\n",
            "repeated: a",
        ),
    ],
)
def test_invalid_values_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.toml")
    assert needle in str(err.value)


def test_missing_and_binary_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(binary)


def test_auto_provider_is_offline_without_key_or_base_url() -> None:
    config = parse_config("", "empty")
    provider = ModelProvider(config.llm, env={})
    assert provider.offline
    assert isinstance(provider.default(), EchoModel)
    assert provider.notice() and "echo" in provider.notice()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "env"),
    [("", {"OPENAI_API_KEY": "sk-test"}), ("[llm]\nbase_url = 'http://127.0.0.1:9/v1'\n", {})],
)
async def test_auto_provider_uses_openai_compatible_with_key_or_base_url(
    text: str, env: dict[str, str]
) -> None:
    provider = ModelProvider(parse_config(text, "c").llm, env=env)
    assert not provider.offline
    assert isinstance(provider.default(), OpenAIChatModel)
    assert provider.notice() is None
    await provider.close()


def test_fingerprint_changes_with_policy() -> None:
    a = parse_config("[pipeline]\nrefusal = 'no'\n", "a")
    b = parse_config("[pipeline]\nrefusal = 'nope'\n", "b")
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == parse_config("[pipeline]\nrefusal = 'no'\n", "c").fingerprint()


def test_config_option_works_before_or_after_the_command() -> None:
    from bot.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["--config", "a.toml", "chat"]).config == "a.toml"
    assert parser.parse_args(["chat", "--config", "b.toml"]).config == "b.toml"
    assert parser.parse_args(["logs", "--config", "c.toml"]).config == "c.toml"
    assert parser.parse_args(["chat"]).config is None
