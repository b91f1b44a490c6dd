"""Malformed HTTP requests to the Slack app: a clear 4xx and one log line, never a 500.

Each request goes over real HTTP into the real slack-bolt app. A bad
signature is answered 401 before the body is even parsed; a signed body that
is not a Slack request (not JSON, not an object, an ``event`` that is not an
object, a broken form payload) is answered 400. Either way the log gets
exactly one line without a traceback, and the bot keeps answering.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.stubs.openai_server import Reply
from tests.stubs.slack_harness import SlackRig, slack_rig
from tests.stubs.slack_payloads import signed_headers

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def form_payload(payload: object) -> str:
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


BAD_BODIES: list[tuple[str, str, str]] = [
    (JSON, "hello", "not JSON"),
    (JSON, "[1, 2]", "JSON array"),
    (JSON, '"a string"', "JSON string"),
    (JSON, "null", "JSON null"),
    (JSON, json.dumps({"type": "event_callback", "event": "x"}), "event is a JSON string"),
    (JSON, json.dumps({"type": "event_callback", "event": [1]}), "event is a JSON array"),
    (JSON, json.dumps({"type": "event_callback", "event": {"type": [1]}}), "without a type"),
    (JSON, json.dumps({"type": "event_callback"}), "without an event"),
    (JSON, json.dumps({"type": "url_verification"}), "without a challenge"),
    (
        JSON,
        json.dumps({"type": "event_callback", "event": {"type": "x"}, "authorizations": 3}),
        "authorizations",
    ),
    (FORM, "payload=notjson", "not JSON"),
    (FORM, form_payload([1]), "JSON array"),
    (FORM, form_payload({"type": "block_actions", "actions": "x"}), "actions"),
    (FORM, form_payload({"type": "view_submission", "view": "x"}), "view"),
    (FORM, form_payload({"type": "shortcut", "callback_id": [1]}), "callback_id"),
    (FORM, "%%%&&==", "neither an event"),
]


async def post(rig: SlackRig, body: bytes | str, headers: dict[str, str]) -> tuple[int, str]:
    async with rig.http.post(rig.service.url, data=body, headers=headers) as response:
        return response.status, await response.text()


def slack_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Everything the request logged, from guardbot or slack-bolt, at INFO and above."""
    return [
        r
        for r in caplog.records
        if r.name.startswith(("guardbot.slack", "slack_bolt")) and r.levelno >= logging.INFO
    ]


async def still_answers(rig: SlackRig) -> None:
    await rig.send(rig.mention("are you still there?"))
    [done] = await rig.observed.delivered(1)
    assert done.sent and done.decision.reply == "yes"
    assert [r.text for r in rig.observed.requests] == ["are you still there?"]


@pytest.mark.parametrize(("content_type", "body", "_reason"), BAD_BODIES)
async def test_an_unsigned_bad_body_is_401_with_one_line(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    body: str,
    _reason: str,
) -> None:
    async with slack_rig(tmp_path, script=lambda _r: Reply(text="yes")) as rig:
        caplog.set_level(logging.DEBUG)
        status, answer = await post(rig, body, {"Content-Type": content_type})
        assert status == 401 and "signature" in answer
        [record] = slack_records(caplog)
        assert record.exc_info is None and "bad or stale signature" in record.getMessage()
        assert body not in record.getMessage() or body == "hello"  # never the untrusted body
        caplog.clear()
        await still_answers(rig)


@pytest.mark.parametrize(("content_type", "body", "reason"), BAD_BODIES)
async def test_a_signed_malformed_body_is_400_with_one_line(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content_type: str,
    body: str,
    reason: str,
) -> None:
    async with slack_rig(tmp_path, script=lambda _r: Reply(text="yes")) as rig:
        caplog.set_level(logging.DEBUG)
        status, answer = await post(rig, body, signed_headers(body, content_type=content_type))
        assert status == 400 and reason in json.loads(answer)["error"]
        [record] = slack_records(caplog)
        assert record.exc_info is None and reason in record.getMessage()
        assert rig.observed.requests == [] and rig.observed.admin_calls == []
        caplog.clear()
        await still_answers(rig)


async def test_unreadable_signature_headers_and_bytes_are_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_rig(tmp_path) as rig:
        caplog.set_level(logging.DEBUG)
        assert (await post(rig, b"\xff\xfe{", {"Content-Type": JSON}))[0] == 401
        # slack-sdk verifies text, so bytes that are not UTF-8 cannot carry a valid signature
        bad_ts = signed_headers("{}") | {"X-Slack-Request-Timestamp": "not-a-number"}
        assert (await post(rig, "{}", bad_ts))[0] == 401  # no ValueError escapes
        non_ascii = signed_headers("{}") | {"X-Slack-Signature": "v0=\u00e9"}
        assert (await post(rig, "{}", non_ascii))[0] == 401
        records = slack_records(caplog)
        assert len(records) == 3 and not [r for r in records if r.exc_info]


WEIRD: list[Any] = ["x", 7, True, [1], ["x"], [{"a": 1}], {"id": [1]}, {}]
TOP_FIELDS = [
    "team",
    "enterprise",
    "user",
    "channel",
    "authorizations",
    "view",
    "message",
    "is_ext_shared_channel",
    "enterprise_id",
    "team_id",
    "event_id",
    "response_urls",
]
EVENT_FIELDS = [
    "user",
    "channel",
    "ts",
    "thread_ts",
    "subtype",
    "text",
    "bot_id",
    "item",
    "message",
    "previous_message",
    "channel_type",
    "team",
    "user_team",
]


async def test_no_event_shape_makes_a_500_or_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_rig(tmp_path, script=lambda _r: Reply(text="yes")) as rig:
        caplog.set_level(logging.DEBUG)
        statuses: set[int] = set()
        for where, fields in (("top", TOP_FIELDS), ("event", EVENT_FIELDS)):
            for name in fields:
                for value in WEIRD:
                    payload = rig.mention("weird")
                    (payload if where == "top" else payload["event"])[name] = value
                    payload["is_ext_shared_channel"] = payload.get("is_ext_shared_channel", True)
                    statuses.add((await rig.send(payload))[0])
        await rig.send(rig.mention("are you still there?"))
        done = await rig.observed.answered("are you still there?")
        assert done.sent and done.decision.reply == "yes"
        assert statuses <= {200, 400}
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
