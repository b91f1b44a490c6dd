"""Starting the Slack adapter: secrets, modes, and clear errors when they are wrong.

Error messages name the variable to fix and never contain a secret's value.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from adapters.base import AdapterConfigError
from adapters.slack.config import SlackConfig
from adapters.slack.service import SlackService, read_secrets, slack_requested
from bot.config.schema import ConfigError, parse_config
from tests.stubs.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack
from tests.stubs.slack_harness import HTTP_ENV, SOCKET_ENV, slack_rig

XOXP = "xoxp-123-456-secretvalue"


class NoHandler:
    """Startup never reaches the handler; any call is a test failure."""

    async def handle(self, request: object) -> object:
        raise AssertionError("handle called")

    async def record_delivery(self, decision: object, *, sent: bool, error: str | None) -> None:
        raise AssertionError("record_delivery called")

    async def admin(self, request: object, command: str, *, platform_admin: bool = False) -> str:
        raise AssertionError("admin called")


B = {"SLACK_BOT_TOKEN": BOT_TOKEN}


@pytest.mark.parametrize(
    ("env", "mode", "expected"),
    [
        ({}, "auto", "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": XOXP}, "auto", "bot token starting with xoxb- (it starts with xoxp-)"),
        (B, "auto", "set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET"),
        (B | {"SLACK_SIGNING_SECRET": "s"}, "socket", "needs SLACK_APP_TOKEN"),
        (B | {"SLACK_APP_TOKEN": XOXP}, "auto", "starting with xapp-"),
        (B | {"SLACK_APP_TOKEN": "xapp-1"}, "http", "needs SLACK_SIGNING_SECRET"),
        (B | {"SLACK_SIGNING_SECRET": XOXP}, "auto", "holds a token"),
    ],
)
def test_missing_or_misplaced_secrets_are_clear_errors(
    env: dict[str, str], mode: str, expected: str
) -> None:
    with pytest.raises(AdapterConfigError, match=re.escape(expected)) as err:
        SlackService.from_env(SlackConfig(mode=mode), NoHandler(), env=env)  # type: ignore[arg-type]
    assert "secretvalue" not in str(err.value)


def test_mode_is_chosen_from_the_secrets() -> None:
    config = SlackConfig()
    assert read_secrets(config, SOCKET_ENV | HTTP_ENV).mode == "socket"
    assert (
        read_secrets(config, {**HTTP_ENV, "SLACK_SIGNING_SECRET": f" {SIGNING_SECRET}\n"}).mode
        == "http"
    )
    assert read_secrets(SlackConfig(mode="http"), SOCKET_ENV | HTTP_ENV).mode == "http"
    assert "xoxb" not in repr(read_secrets(config, HTTP_ENV))
    assert slack_requested(config, {"SLACK_APP_TOKEN": "xapp-1"})
    assert not slack_requested(config, {"DISCORD_TOKEN": "x"})
    assert not slack_requested(SlackConfig(enabled=False), HTTP_ENV)


async def test_a_rejected_bot_token_fails_the_start() -> None:
    async with FakeSlack(bot_token="xoxb-the-real-one") as fake:
        config = SlackConfig(mode="http", host="127.0.0.1", port=0, api_url=fake.api_url)
        service = SlackService.from_env(config, NoHandler(), env=HTTP_ENV)  # type: ignore[arg-type]
        with pytest.raises(
            AdapterConfigError, match=r"rejected SLACK_BOT_TOKEN .*invalid_auth"
        ) as err:
            await service.start()
        assert BOT_TOKEN not in str(err.value)
        await service.stop()  # harmless after a failed start


async def test_an_unreachable_api_url_fails_the_start() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = SlackConfig(mode="http", api_url=f"http://127.0.0.1:{port}/api", api_retries=0)
    service = SlackService.from_env(config, NoHandler(), env=HTTP_ENV)  # type: ignore[arg-type]
    with pytest.raises(AdapterConfigError, match="cannot reach the Web API at http://127.0.0.1"):
        await service.start()


async def test_a_busy_port_fails_the_start(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        port = int(rig.service.url.rsplit(":", 1)[1].split("/")[0])
        config = SlackConfig(mode="http", host="127.0.0.1", port=port, api_url=rig.fake.api_url)
        second = SlackService.from_env(config, NoHandler(), env=HTTP_ENV)  # type: ignore[arg-type]
        with pytest.raises(AdapterConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await second.start()


async def test_the_web_api_client_uses_api_url(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        assert rig.service.client.base_url == rig.fake.api_url
        assert [c.method for c in rig.fake.calls] == ["auth.test"]  # checked at start
        assert rig.service.name.startswith("Slack (Events API at http://127.0.0.1:")


def test_slack_section_parses_and_rejects_typos() -> None:
    config = parse_config(
        '[slack]\nmode = "http"\nport = 3100\napi_url = "https://slack-gov.com/api"\n'
        "[slack.channel_settings.C9]\nreply_all = true\n",
        "test.toml",
    )
    assert config.slack.api_url == "https://slack-gov.com/api/"
    assert config.slack.channel("C9").reply_all and not config.slack.channel("C1").reply_all
    with pytest.raises(ConfigError, match=r"slack.folow_threads \(line 2\): unknown key"):
        parse_config("[slack]\nfolow_threads = true\n", "test.toml")
    with pytest.raises(ConfigError, match="api_url must be an http"):
        parse_config('[slack]\napi_url = "slack.com/api"\n', "test.toml")
    with pytest.raises(ConfigError, match="reply_al"):
        parse_config("[slack.channel_settings.C1]\nreply_al = true\n", "test.toml")
    for field in SlackConfig.model_fields.values():
        assert field.description, "every [slack] key is documented"
