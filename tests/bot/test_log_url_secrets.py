"""A database password written into a log URL is refused, and never printed back.

pydantic's own error text carries the rejected input, and an operator pastes
errors into tickets: the config error, the CLI's one line for ``--db`` and
``migrate-log --to``, and a PostgresLog's shown target must name the problem
and the variable to use, never the password itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli.main import main
from bot.config.schema import ConfigError, parse_config
from middleware.decision_log.postgres.url import PgTarget, target_from

SECRET = "s3cret-Pa55"
URL = f"postgresql://guardbot:{SECRET}@127.0.0.1:1/guardbot"


def test_the_config_error_names_the_variable_not_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[log]\nurl = "{URL}"\n', "config.toml")
    message = str(caught.value)
    assert "log.url" in message and "password_env" in message
    assert SECRET not in message and SECRET not in repr(caught.value)


def test_chat_with_such_a_config_prints_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[log]\nurl = "{URL}"\n')
    assert main(["chat", "--config", str(config)]) != 0
    out = capsys.readouterr()
    assert "password" in out.err and SECRET not in out.err + out.out


@pytest.mark.parametrize("argv", [["verify", "--db", URL], ["migrate-log", "--to", URL]])
def test_a_password_on_the_command_line_is_refused_unprinted(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--config", str(tmp_path / "none.toml")])
    out = capsys.readouterr()
    assert code != 0 and "PGPASSWORD" in out.err
    assert SECRET not in out.err + out.out


def test_a_target_shows_no_password() -> None:
    target = target_from(URL.replace(f":{SECRET}", ""), {"PGPASSWORD": SECRET})
    assert target.password == SECRET
    assert SECRET not in str(target) + repr(target)
    assert SECRET not in repr(PgTarget(target.url, SECRET))
