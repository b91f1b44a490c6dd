"""Admin commands through Slack's `/guardbot` slash command, signed, over real HTTP.

The slack-bolt app receives a signed slash-command form; the answer comes back
ephemerally in the HTTP response, and the setting is proven by the next
mention's reply as posted to the fake Slack Web API.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from tests.stubs.slack_api import signed_headers, slash_command
from tests.stubs.slack_harness import SlackRig, slack_rig

SHORT_INPUT_GUARD = {
    "guards": [{"name": "short", "kind": "max_length", "stage": "input", "max_chars": 40}]
}
LONG = "please write me a very long essay about nothing at all"


async def command(rig: SlackRig, text: str, *, user: str, channel: str = "C1") -> dict[str, Any]:
    form = slash_command(
        text, user_id=user, channel_id=channel, response_url=rig.fake.response_url("cmd")
    )
    body = urllib.parse.urlencode(form)
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    async with rig.http.post(rig.service.url, data=body, headers=headers) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.loads(await response.text())
    assert answer["response_type"] == "ephemeral"
    return answer


async def posted_reply(rig: SlackRig, text: str, *, channel: str, count: int) -> str:
    payload = rig.mention(text, channel=channel)
    await rig.send(payload)
    await rig.observed.delivered(count)
    [reply] = rig.replies(payload["event"]["ts"], channel)  # streamed or not, as it reads
    return reply


async def test_admin_changes_a_channel_setting_from_slack(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, config=SHORT_INPUT_GUARD) as rig:
        answer = await command(rig, "set refusal 'Not in #general, sorry.' --here", user="UADMIN")
        assert answer["text"].startswith('Set refusal = "Not in #general, sorry."')
        assert "in this channel (slack:C1)" in answer["text"]
        assert await posted_reply(rig, LONG, channel="C1", count=1) == "Not in #general, sorry."
        assert await posted_reply(rig, LONG, channel="C2", count=2) == (
            "Sorry, I can't help with that."
        )
        [row] = await rig.bot.log.admin_actions()
        assert (row.actor, row.platform, row.channel_id, row.scope, row.new) == (
            "slack:UADMIN", "slack", "C1", "channel:slack:C1", "Not in #general, sorry.",
        )  # fmt: skip
        assert rig.observed.requests[0].text == LONG  # the mentions; the command never was one


async def test_non_admin_and_bad_values_change_nothing(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, config=SHORT_INPUT_GUARD) as rig:
        refused = await command(rig, "guard disable short", user="U2")
        assert refused["text"].startswith("Sorry, admin commands are only for this bot's admins")
        rejected = await command(rig, "set best_of 99", user="UADMIN")
        assert rejected["text"] == (
            "Not changed: best_of: '99' is not valid; expected a whole number from 1 to 8"
        )
        assert await rig.bot.log.settings() == []
        rows = [(r.actor, r.allowed, r.error) for r in reversed(await rig.bot.log.admin_actions())]
        assert rows[0] == ("slack:U2", False, "not an admin")
        assert rows[1][0:2] == ("slack:UADMIN", True) and "expected a whole number" in rows[1][2]
        assert await posted_reply(rig, LONG, channel="C1", count=1) == (
            "Sorry, I can't help with that."
        )
        assert rig.observed.requests[0].text == LONG


async def test_slack_escapes_in_command_text_are_undone(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, config=SHORT_INPUT_GUARD) as rig:
        # Slack sends "&", "<" and ">" typed by the admin as &amp; &lt; &gt;
        await command(rig, "set refusal 'Q&amp;A &lt;only&gt;'", user="UADMIN")
        [row] = await rig.bot.log.admin_actions()
        assert row.new == "Q&A <only>"  # stored as typed, not as Slack escaped it
        # ...and escaped again on the way out, so Slack shows exactly what was typed
        assert await posted_reply(rig, LONG, channel="C1", count=1) == "Q&amp;A &lt;only&gt;"
