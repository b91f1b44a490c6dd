"""Socket Mode against a local WebSocket: the same answers, acked over the socket.

The fake Slack hands out its own ``ws://127.0.0.1`` URL from
``apps.connections.open``; slack-sdk's real Socket Mode client connects to it,
receives envelopes and acks them, and the bot answers through the Web API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterConfigError
from bot.cli.run import serve
from bot.config.schema import Config
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.stubs.slack_api import FakeSlack, event_callback, slash_command
from tests.stubs.slack_harness import SOCKET_ENV, SlackRig, slack_rig

SOCKET = {"mode": "auto"}  # SLACK_APP_TOKEN is set, so auto means Socket Mode


def envelope(
    envelope_id: str, payload: dict[str, Any], kind: str = "events_api", retry: int = 0
) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "type": kind,
        "payload": payload,
        "accepts_response_payload": kind != "events_api",
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
    }


async def acked(rig: SlackRig, envelope_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((a for a in rig.fake.socket_acks if a.get("envelope_id") == envelope_id), None)

    return await rig.fake.wait_until(find)


async def test_mention_over_socket_mode_is_acked_and_answered(tmp_path: Path) -> None:
    script = lambda _r: Reply(text="hello over the socket")  # noqa: E731
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV, script=script) as rig:
        assert rig.service.mode == "socket" and rig.fake.socket_connected.is_set()
        payload = rig.mention("hi")
        await rig.fake.socket_send(envelope("env-1", payload))
        assert await acked(rig, "env-1") == {"envelope_id": "env-1"}
        [done] = await rig.observed.delivered(1)

        assert done.sent and done.decision.request.thread_id == payload["event"]["ts"]
        assert rig.replies(payload["event"]["ts"]) == ["hello over the socket"]
        opened = rig.fake.calls_to("apps.connections.open")
        assert len(opened) == 1 and opened[0].token == SOCKET_ENV["SLACK_APP_TOKEN"]


async def test_socket_mode_retry_is_not_answered_twice(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        payload = rig.mention("once")
        await rig.fake.socket_send(envelope("env-1", payload))
        await rig.observed.delivered(1)
        await rig.fake.socket_send(envelope("env-2", payload, retry=1))
        await acked(rig, "env-2")
        await rig.fake.socket_send(envelope("env-3", rig.mention("twice")))
        await rig.observed.delivered(2)
        assert [r.text for r in rig.observed.requests] == ["once", "twice"]


BAD_USER = event_callback({"type": "app_mention", "user": ["U1"]}, event_id="Ev9")
BAD_EVENT = {"type": "event_callback", "event": "x"}
MALFORMED: list[tuple[str, str, str | None]] = [
    ("not JSON", "{not json", None),
    ("an array", json.dumps([envelope("env-a", {})]), None),
    ("no envelope id", json.dumps({"type": "events_api", "payload": {}}), None),
    ("payload a list", json.dumps(envelope("env-b", {}) | {"payload": []}), "env-b"),
    ("payload a string", json.dumps(envelope("env-c", {}) | {"payload": "hi"}), "env-c"),
    ("event a string", json.dumps(envelope("env-d", BAD_EVENT)), "env-d"),
    ("user a list", json.dumps(envelope("env-e", BAD_USER)), "env-e"),
    ("no type", json.dumps(envelope("env-f", {"team_id": "T1"})), "env-f"),
    # An untrusted type, long and multi-line: named cut short, on one line.
    (
        "a hostile type",
        json.dumps(envelope("env-g", {}, kind="evil\n" * 500) | {"payload": 1}),
        "env-g",
    ),
]


@pytest.mark.parametrize(("name", "frame", "envelope_id"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_envelope_is_acked_and_skipped_with_one_log_line(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    frame: str,
    envelope_id: str | None,
) -> None:
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="guardbot"):
            await rig.fake.socket_send_raw(frame)
            # The next envelope is answered: the connection and the bot are unharmed.
            await rig.fake.socket_send(envelope("env-ok", rig.mention("still there?")))
            await acked(rig, "env-ok")
            [done] = await rig.observed.delivered(1)
            if envelope_id is not None:  # acked, so Slack does not send it again
                assert await acked(rig, envelope_id) == {"envelope_id": envelope_id}
        assert done.sent and [r.text for r in rig.observed.requests] == ["still there?"]
        skipped = [r for r in caplog.records if "malformed Socket Mode envelope" in r.message]
        assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING, name
        assert "\n" not in skipped[0].getMessage()  # one line, and not the frame itself
        assert "still there" not in skipped[0].getMessage()
        assert "evil\n" not in skipped[0].getMessage() and len(skipped[0].getMessage()) < 200
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_slash_command_over_socket_mode_is_ephemeral(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        form = slash_command("help", user_id="U2", response_url=rig.fake.response_url("x"))
        await rig.fake.socket_send(envelope("env-9", form, kind="slash_commands"))
        ack = await acked(rig, "env-9")
        assert ack["payload"]["response_type"] == "ephemeral"
        assert ack["payload"]["text"].startswith(
            "Sorry, admin commands are only for this bot's admins"
        )


async def test_a_rejected_app_token_fails_the_start(tmp_path: Path) -> None:
    with pytest.raises(AdapterConfigError, match=r"rejected SLACK_APP_TOKEN .*invalid_auth"):
        async with slack_rig(
            tmp_path, slack=SOCKET, env={**SOCKET_ENV, "SLACK_APP_TOKEN": "xapp-wrong"}
        ):
            pass


async def test_an_app_token_rejected_on_reconnect_fails_the_service(tmp_path: Path) -> None:
    """slack-sdk would retry forever; the service reports it so `guardbot run` can exit."""
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        assert not rig.service.failed.is_set()
        rig.fake.app_token = "xapp-1-a-new-token"  # the old one was revoked
        await rig.fake.close_sockets()  # Slack drops the connection; the client reconnects
        async with asyncio.timeout(10):
            await rig.service.failed.wait()
        assert "rejected SLACK_APP_TOKEN" in rig.service.failure
        assert "invalid_auth" in rig.service.failure
        assert SOCKET_ENV["SLACK_APP_TOKEN"] not in rig.service.failure


async def test_guardbot_run_serves_slack_until_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeSlack() as fake, StubOpenAI(lambda _r: Reply(text="served")) as llm:
        config = Config.model_validate(
            {
                "llm": {"provider": "openai", "base_url": llm.base_url},
                "log": {"path": str(tmp_path / "guardbot.db")},
                "slack": {"api_url": fake.api_url},
            }
        )
        stop = asyncio.Event()
        serving = asyncio.create_task(serve(config, SOCKET_ENV | {"OPENAI_API_KEY": "sk"}, stop))
        await fake.socket_connected.wait()
        mention = {
            "type": "app_mention",
            "user": "U1",
            "text": "<@UBOT> hi",
            "ts": "5.5",
            "channel": "C1",
        }
        await fake.socket_send(envelope("env-1", event_callback(mention, event_id="Ev1")))

        def replies() -> list[str]:
            return [m.text for m in fake.thread("C1", "5.5") if m.user == "UBOT"]

        await fake.wait_until(lambda: replies() == ["served"])
        stop.set()
        assert await serving == 0
        assert replies() == ["served"] and not any(m.streaming for m in fake.messages)
        assert "Slack (Socket Mode) is up" in capsys.readouterr().err


async def test_guardbot_run_reports_a_rejected_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeSlack(app_token="xapp-another") as fake:
        config = Config.model_validate(
            {"log": {"path": str(tmp_path / "guardbot.db")}, "slack": {"api_url": fake.api_url}}
        )
        assert await serve(config, SOCKET_ENV) == 2
        assert "rejected SLACK_APP_TOKEN" in capsys.readouterr().err


async def test_an_envelope_bolt_cannot_read_is_acked_once_and_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback ack of SocketModeHandler.handle: an envelope whose own fields pass
    envelope_problem() but that slack-bolt still fails to turn into a request.

    A ``retry_reason`` that is a number is such a shape today: slack-bolt copies it
    into a header and raises ValueError before any listener runs. Without the
    fallback the envelope would never be acked (Slack resends it) and slack-sdk
    would log a traceback for each copy.
    """
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="guardbot"):
            odd = envelope("env-odd", rig.mention("unreadable")) | {"retry_reason": 5}
            await rig.fake.socket_send(odd)
            assert await acked(rig, "env-odd") == {"envelope_id": "env-odd"}
            # The connection and the bot are unharmed: the next envelope is answered.
            await rig.fake.socket_send(envelope("env-ok", rig.mention("still there?")))
            await acked(rig, "env-ok")
            [done] = await rig.observed.delivered(1)

        assert done.sent and [r.text for r in rig.observed.requests] == ["still there?"]
        assert [a["envelope_id"] for a in rig.fake.socket_acks].count("env-odd") == 1
        assert rig.replies(odd["payload"]["event"]["ts"]) == []  # not even a placeholder
        skipped = [r.getMessage() for r in caplog.records if "bolt cannot read" in r.getMessage()]
        assert skipped == ["slack: skipped a events_api envelope bolt cannot read (ValueError)"]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# A button click from a message guardbot did not post: guardbot registers no action
# listener, so bolt answers 404 (an interaction Slack sends to every app on the socket).
BUTTON = {
    "type": "block_actions",
    "team": {"id": "T1", "domain": "t"},
    "user": {"id": "U1", "team_id": "T1"},
    "api_app_id": "A1",
    "trigger_id": "1.2.3",
    "container": {"type": "message", "channel_id": "C1", "message_ts": "1.1"},
    "channel": {"id": "C1", "name": "general"},
    "actions": [{"type": "button", "action_id": "someone_elses", "block_id": "b1"}],
}


async def acked_bare_then_still_answered(rig: SlackRig, sent: dict[str, Any]) -> None:
    """``sent`` is acked once without a payload and not answered; a mention after it is
    acked once and answered (the connection and the bot are unharmed)."""
    envelope_id = sent["envelope_id"]
    await rig.fake.socket_send(sent)
    assert await acked(rig, envelope_id) == {"envelope_id": envelope_id}
    await rig.fake.socket_send(envelope("env-ok", rig.mention("still there?")))
    await acked(rig, "env-ok")
    [done] = await rig.observed.delivered(1)
    assert done.sent and [r.text for r in rig.observed.requests] == ["still there?"]
    ids = [a["envelope_id"] for a in rig.fake.socket_acks]
    assert ids.count(envelope_id) == 1 and ids.count("env-ok") == 1


async def test_an_envelope_no_listener_takes_is_acked_once_and_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """bolt answers it 404; slack-sdk alone acks only a 200, so Slack would resend it."""
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="guardbot"):
            await acked_bare_then_still_answered(
                rig, envelope("env-click", BUTTON, kind="interactive")
            )
        # Not a failure of ours (bolt names the unhandled request on its own logger).
        ours = [r for r in caplog.records if r.name == "guardbot.slack"]
        assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info]


async def test_an_envelope_bolt_fails_on_is_acked_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """bolt answers 500 when a listener (or middleware) raises: acked bare, one WARNING."""
    async with slack_rig(tmp_path, slack=SOCKET, env=SOCKET_ENV) as rig:
        assert rig.service.listeners is not None
        app = rig.service.listeners.app

        async def failing(body: dict[str, Any], next: Any) -> None:  # noqa: A002 - bolt's name
            if body.get("event", {}).get("text") == "<@UBOT> break":
                raise RuntimeError("a bug in a listener")
            await next()

        app.middleware(failing)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="guardbot"):
            await acked_bare_then_still_answered(rig, envelope("env-bad", rig.mention("break")))
        ours = [r for r in caplog.records if r.name == "guardbot.slack"]
        warned = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
        assert warned == [
            "slack: bolt failed on a events_api envelope (HTTP 500); acked, not answered"
        ]
