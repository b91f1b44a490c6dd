"""The Slack adapter over real HTTP: signed requests in, Web API calls out.

Each test runs the whole chain: signed Events API or slash-command requests
into the slack-bolt app, a real GuardBot with its SQLite log and the real
`openai` client against the stub, and the bot's Web API client pointed at the
fake Slack, whose call records the assertions read. Concurrency is shown with
events (a gated model), never with sleeps.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.stubs.openai_server import Reply
from tests.stubs.slack_harness import GatedModel, slack_rig

REFUSAL = "Sorry, I can't help with that."
SHORT_INPUT_GUARD = {
    "guards": [{"name": "short", "kind": "max_length", "stage": "input", "max_chars": 40}]
}


async def test_mention_is_answered_in_its_thread(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, script=lambda _r: Reply(text="Paris, of course.")) as rig:
        payload = rig.mention("what is the capital of France?")
        ts = payload["event"]["ts"]
        assert await rig.send(payload) == (200, "")
        [done] = await rig.observed.delivered(1)

        placeholder = rig.fake.calls_to("chat.postMessage")[0].args
        assert placeholder == {"channel": "C1", "thread_ts": ts, "text": "thinking…"}
        # Streamed (the default): a Slack stream in the thread takes the placeholder's place.
        [start] = rig.fake.calls_to("chat.startStream")
        assert (start.args["channel"], start.args["thread_ts"]) == ("C1", ts)
        assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == ("T1", "U1")
        assert rig.replies(ts) == ["Paris, of course."]
        assert not any(m.streaming for m in rig.fake.messages)  # the stream was stopped
        assert rig.assert_every_state_a_prefix() == ["Paris,", "of", "course."]
        # The model saw the question without the bot's mention.
        assert "what is the capital of France?" in rig.llm.chat_requests()[0].text()
        assert "<@UBOT>" not in rig.llm.chat_requests()[0].text()

        request = done.decision.request
        assert (request.platform, request.channel_id, request.thread_id) == ("slack", "C1", ts)
        assert (request.user_id, request.message_id) == ("U1", ts)
        stored = await rig.bot.log.get_stored(done.decision.id)
        assert stored is not None and [d.status for d in stored.deliveries] == ["sent"]


async def test_direct_messages_are_one_conversation_answered_in_the_dm(tmp_path: Path) -> None:
    replies = iter(["Hi! How can I help?", "You said hello."])
    async with slack_rig(tmp_path, script=lambda _r: Reply(text=next(replies))) as rig:
        await rig.send(rig.message("hello", channel="D1", channel_type="im"))
        await rig.observed.delivered(1)
        await rig.send(rig.message("what did I say?", channel="D1", channel_type="im"))
        [first, second] = await rig.observed.delivered(2)

        # answered in the DM itself, not in a thread under each message
        posts = rig.fake.calls_to("chat.postMessage")
        assert len(posts) == 2 and all("thread_ts" not in c.args for c in posts)
        assert [(m.text, m.thread_ts) for m in rig.fake.messages if m.user == "UBOT"] == [
            ("Hi! How can I help?", None),
            ("You said hello.", None),
        ]
        assert [d.decision.request.thread_id for d in (first, second)] == ["", ""]
        assert second.decision.reply == "You said hello."
        # the second generation request carries the first exchange as history
        asked = rig.llm.chat_requests()[1].body["messages"]
        assert [m["content"] for m in asked[-3:]] == [
            "hello",
            "Hi! How can I help?",
            "what did I say?",
        ]


async def test_a_direct_message_in_a_thread_is_answered_in_that_thread(tmp_path: Path) -> None:
    replies = iter(["first answer", "second answer"])
    async with slack_rig(tmp_path, script=lambda _r: Reply(text=next(replies))) as rig:
        parent = rig.fake.add_message("D1", "an earlier message", user="U1")
        await rig.send(rig.message("about this", channel="D1", channel_type="im", thread_ts=parent))
        await rig.observed.delivered(1)
        await rig.send(rig.message("and more", channel="D1", channel_type="im", thread_ts=parent))
        [first, second] = await rig.observed.delivered(2)

        posts = rig.fake.calls_to("chat.postMessage")
        assert [c.args["thread_ts"] for c in posts] == [parent, parent]
        assert [d.decision.request.thread_id for d in (first, second)] == [parent, parent]
        asked = rig.llm.chat_requests()[1].body["messages"]
        assert [m["content"] for m in asked[-3:]] == ["about this", "first answer", "and more"]


async def test_blocked_message_gets_the_refusal(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, config=SHORT_INPUT_GUARD) as rig:
        await rig.send(rig.mention("please write me a very long essay about nothing at all"))
        [done] = await rig.observed.delivered(1)

        assert done.decision.blocked and done.decision.blocked_by == "short"
        assert rig.replies(done.decision.request.thread_id) == [REFUSAL]
        assert [text for _, _, text in rig.fake.changes if text != "thinking…"][0] == REFUSAL
        assert done.sent


async def test_bad_signature_and_stale_timestamp_are_rejected(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        forged = await rig.send(rig.mention("hi"), secret="not-the-signing-secret")
        stale = await rig.send(rig.mention("hi"), timestamp=int(time.time()) - 10 * 60)
        tampered_headers = {"X-Slack-Signature": "v0=" + "0" * 64}
        tampered = await rig.send(rig.mention("hi"), headers=tampered_headers)

        assert [forged[0], stale[0], tampered[0]] == [401, 401, 401]
        assert rig.fake.calls == [c for c in rig.fake.calls if c.method == "auth.test"]
        assert rig.observed.requests == []


async def test_retried_event_is_answered_once(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        payload = rig.mention("hello")
        assert (await rig.send(payload))[0] == 200
        await rig.observed.delivered(1)
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert (await rig.send(payload, headers=retry))[0] == 200
        # The same message again as a `message` event (other event id): also not answered twice.
        event = payload["event"]
        same_message = rig.message(event["text"], ts=event["ts"])
        assert (await rig.send(same_message))[0] == 200
        # A later message is answered; by then the earlier requests have been dealt with.
        await rig.send(rig.mention("and now?"))
        await rig.observed.delivered(2)

        assert [r.text for r in rig.observed.requests] == ["hello", "and now?"]
        assert len(rig.fake.calls_to("chat.postMessage")) == 2


async def test_retry_of_an_event_never_seen_is_answered(tmp_path: Path) -> None:
    # The first delivery was lost (or we were restarting): the retry is the message.
    async with slack_rig(tmp_path) as rig:
        await rig.send(rig.mention("lost once"), headers={"X-Slack-Retry-Num": "2"})
        [done] = await rig.observed.delivered(1)
        assert done.decision.request.text == "lost once" and done.sent


async def test_ack_arrives_before_a_slow_generation_ends(tmp_path: Path) -> None:
    model = GatedModel("worth the wait")
    async with slack_rig(tmp_path, model=model) as rig:
        payload = rig.mention("think hard")
        assert await rig.send(payload) == (200, "")
        await model.started.wait()
        # Acked, generating, and the placeholder is already up.
        await rig.fake.wait_until(lambda: rig.fake.calls_to("chat.postMessage"))
        assert not model.gate.is_set() and rig.observed.deliveries == []
        # Slack retries a slow ack; that must not start a second generation.
        assert (await rig.send(payload, headers={"X-Slack-Retry-Num": "1"}))[0] == 200

        model.gate.set()
        [done] = await rig.observed.delivered(1)
        assert done.decision.reply == "worth the wait"
        assert rig.replies(payload["event"]["ts"]) == ["worth the wait"]
        assert model.calls == 1


@pytest.mark.parametrize(
    ("stream_api", "shown"),
    [
        ("auto", "&lt;!channel&gt; look at &lt;@U999&gt; &amp; **this**"),  # markdown_text
        ("update", "&lt;!channel&gt; look at &lt;@U999&gt; &amp; *this*"),  # mrkdwn
        ("off", "&lt;!channel&gt; look at &lt;@U999&gt; &amp; *this*"),
    ],
)
async def test_reply_cannot_ping_or_link(tmp_path: Path, stream_api: str, shown: str) -> None:
    text = "<!channel> look at <@U999> & **this**"
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, script=lambda _r: Reply(text=text)) as rig:
        payload = rig.mention("hi")
        await rig.send(payload)
        await rig.observed.delivered(1)
        assert rig.replies(payload["event"]["ts"]) == [shown]


@pytest.mark.parametrize(
    ("stream_api", "shown"),
    [
        # A space after "]" means no markdown link starts there: the address shows as text.
        ("auto", "Log in at [https://good.example.com/login] (https://evil.example.net/phish)."),
        ("update", "Log in at <https://evil.example.net/phish>."),
        ("off", "Log in at <https://evil.example.net/phish>."),
    ],
)
async def test_reply_cannot_disguise_a_link(tmp_path: Path, stream_api: str, shown: str) -> None:
    text = "Log in at [https://good.example.com/login](https://evil.example.net/phish)."
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, script=lambda _r: Reply(text=text)) as rig:
        payload = rig.mention("where do I log in?")
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)
        assert rig.replies(payload["event"]["ts"]) == [shown]
        assert done.sent and done.decision.reply == text  # the log keeps what the model wrote


async def test_slash_command_answers_admins_and_refuses_others(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        status, admin = await rig.command("help", user_id="UADMIN")
        assert status == 200 and admin["response_type"] == "ephemeral"
        assert admin["text"].startswith("Admin commands")

        status, other = await rig.command("help", user_id="U2")
        assert status == 200 and other["response_type"] == "ephemeral"
        assert other["text"].startswith("Sorry, admin commands are only for this bot's admins")
        assert "slack:U2" in other["text"]

        calls = rig.observed.admin_calls
        assert [(r.platform, r.user_id, cmd) for r, cmd in calls] == [
            ("slack", "UADMIN", "help"),
            ("slack", "U2", "help"),
        ]
        actors = [(a.actor, a.allowed) for a in await rig.bot.log.admin_actions()]
        assert sorted(actors) == [("slack:U2", False), ("slack:UADMIN", True)]
        assert rig.observed.requests == []  # admin commands never reach the pipeline


async def test_slow_slash_command_is_acked_then_answered_via_response_url(
    tmp_path: Path,
) -> None:
    async with slack_rig(tmp_path) as rig:
        assert rig.service.listeners is not None
        rig.service.listeners.admin_ack_budget_s = 0.05  # Slack allows 3 s; no need to wait them
        rig.observed.admin_gate.clear()
        status, ack = await rig.command("help", user_id="UADMIN", key="slow")
        assert status == 200 and ack == {"text": "Working on it…", "response_type": "ephemeral"}

        rig.observed.admin_gate.set()
        [(key, body)] = await rig.fake.wait_until(lambda: rig.fake.responses)
        assert key == "slow" and body["response_type"] == "ephemeral"
        assert body["text"].startswith("Admin commands")


async def test_url_verification_is_answered(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        challenge = {"token": "t", "challenge": "c-123", "type": "url_verification"}
        status, body = await rig.send(challenge)
        assert status == 200 and "c-123" in body
