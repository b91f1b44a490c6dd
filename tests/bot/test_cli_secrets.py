"""Secrets that reach the CLI from a config file or a command line are not printed back.

The log masks every text it stores; these outputs are built from elsewhere: the
config file (`guardbot config`, the start notice), the text given to
`guardbot screen`, and the Slack SDK's own debug logging under ``-v``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.main import SDK_LOGGERS, main, setup_logging
from bot.config.schema import ConfigError, load_config

KEY = "sk-proj-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # an OpenAI-shaped key


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text + f'\n[log]\npath = "{tmp_path / "g.db"}"\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "toml",
    [
        f'[llm]\napi_key_env = "{KEY}"',
        f'[log]\npassword_env = "{KEY}"\n[pipeline]\nstream = false',
        f'[discord]\ntoken_env = "{KEY}"',
    ],
)
def test_a_key_pasted_where_its_variable_name_belongs_is_refused_unshown(
    tmp_path: Path, toml: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "must name an environment variable" in message
    assert KEY not in message and KEY[:12] not in message


def test_guardbot_config_masks_a_key_written_into_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'[llm]\nsystem_prompt = "use {KEY} for the tools"')
    assert main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out and KEY[:16] not in out
    assert json.loads(out)["llm"]["system_prompt"] == "use [SECRET:openai] for the tools"


def test_guardbot_screen_masks_the_screened_text_in_both_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "")
    text = f"here is my key {KEY} please keep it"
    main(["--config", str(path), "screen", "--json", text])
    as_json = capsys.readouterr().out
    main(["--config", str(path), "screen", text])
    as_table = capsys.readouterr().out
    assert KEY[:16] not in as_json and KEY[:16] not in as_table
    assert json.loads(as_json)[0]["text"] == "here is my key [SECRET:openai] please keep it"
    assert "[SECRET:openai]" in as_table


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    setup_logging(False)


@pytest.mark.usefixtures("restore_logging")
def test_verbose_does_not_turn_on_the_slack_sdk_body_logging() -> None:
    setup_logging(True)
    assert logging.getLogger("guardbot.slack").getEffectiveLevel() == logging.DEBUG
    for name in SDK_LOGGERS:  # at DEBUG the SDK logs every request and event body
        assert logging.getLogger(name).getEffectiveLevel() == logging.INFO
    setup_logging(False)
    for name in ("guardbot.slack", *SDK_LOGGERS):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
