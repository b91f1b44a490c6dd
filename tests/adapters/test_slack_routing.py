"""Which Slack messages the bot answers: mentions, DMs, its threads, its channels.

Messages the bot must ignore are sent first and a message it must answer
last; the events are handled in arrival order, so once the last one is
answered the earlier ones have been decided, and the records show that they
were not answered. No sleeps.
"""

from __future__ import annotations

from pathlib import Path

from tests.stubs.slack_harness import SlackRig, slack_rig


async def answered_texts(rig: SlackRig, sentinel: str, count: int) -> list[str]:
    """Send a sentinel mention, wait for ``count`` deliveries, return what was answered."""
    await rig.send(rig.mention(sentinel))
    await rig.observed.delivered(count)
    return [r.text for r in rig.observed.requests]


async def test_ignores_its_own_posts_edits_and_other_bots(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        await rig.send(rig.message("from myself", channel="D1", channel_type="im", user="UBOT"))
        await rig.send(rig.message("bot post", channel="D1", channel_type="im", bot_id="BBOT"))
        await rig.send(
            rig.message(
                "other bot", channel="D1", channel_type="im", subtype="bot_message", bot_id="B2"
            )
        )
        await rig.send(
            rig.message("app bot", channel="D1", channel_type="im", user="U7", bot_id="B2")
        )
        edited = {"user": "U1", "text": "edited", "ts": "1.0"}
        await rig.send(
            rig.message(
                "", channel="D1", channel_type="im", subtype="message_changed", message=edited
            )
        )
        await rig.send(rig.mention("edited mention", edited={"user": "U1", "ts": "2.0"}))
        await rig.send(
            rig.message("deleted", channel="D1", channel_type="im", subtype="message_deleted")
        )
        await rig.send(rig.event(type="reaction_added", user="U1", reaction="+1"))

        assert await answered_texts(rig, "real question", 1) == ["real question"]


async def test_other_bots_are_answered_when_configured(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, slack={"answer_bots": True}) as rig:
        await rig.send(rig.mention("from a bot", user="UOTHERBOT", bot_id="B2"))
        await rig.send(rig.mention("from myself", user="UBOT", bot_id="BBOT"))
        assert await answered_texts(rig, "human", 2) == ["from a bot", "human"]


async def test_follows_threads_it_started_without_a_mention(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        start = rig.mention("first question")
        thread = start["event"]["ts"]
        await rig.send(start)
        await rig.observed.delivered(1)
        await rig.send(rig.message("a follow-up", thread_ts=thread))
        await rig.observed.delivered(2)
        # Top-level chatter without a mention is not for the bot.
        await rig.send(rig.message("just chatting"))

        assert await answered_texts(rig, "sentinel", 3) == [
            "first question",
            "a follow-up",
            "sentinel",
        ]
        assert rig.observed.deliveries[1].decision.request.thread_id == thread
        assert rig.fake.calls_to("conversations.replies") == []  # it remembered the thread


async def test_after_a_restart_threads_are_recognised_from_slack(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        ours = rig.fake.add_message("C1", "an old question", user="U1")
        rig.fake.add_message("C1", "an old answer", user="UBOT", bot_id="BBOT", thread_ts=ours)
        theirs = rig.fake.add_message("C1", "humans talking", user="U1")
        rig.fake.add_message("C1", "a human reply", user="U2", thread_ts=theirs)

        await rig.send(rig.message("in a human thread", thread_ts=theirs))
        await rig.send(rig.message("back to the bot", thread_ts=ours))
        await rig.observed.delivered(1)
        await rig.send(rig.message("again in the human thread", thread_ts=theirs))

        assert await answered_texts(rig, "sentinel", 2) == ["back to the bot", "sentinel"]
        # One look-up per thread; the answer is cached.
        looked_up = [c.args["ts"] for c in rig.fake.calls_to("conversations.replies")]
        assert sorted(looked_up) == sorted([theirs, ours])


async def test_thread_following_can_be_turned_off(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, slack={"follow_threads": False}) as rig:
        start = rig.mention("first")
        await rig.send(start)
        await rig.observed.delivered(1)
        await rig.send(rig.message("follow-up", thread_ts=start["event"]["ts"]))
        assert await answered_texts(rig, "sentinel", 2) == ["first", "sentinel"]


async def test_a_mention_in_a_thread_is_answered_there(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        parent = rig.fake.add_message("C1", "humans talking", user="U1")
        await rig.send(rig.mention("what do you think?", thread_ts=parent))
        [done] = await rig.observed.delivered(1)
        assert done.decision.request.thread_id == parent
        assert rig.fake.calls_to("chat.postMessage")[0].args["thread_ts"] == parent


async def test_channel_allow_list_and_per_channel_settings(tmp_path: Path) -> None:
    slack = {
        "channels": ["C1", "C3"],
        "channel_settings": {"C3": {"reply_all": True}, "C1": {"follow_threads": False}},
    }
    async with slack_rig(tmp_path, slack=slack) as rig:
        await rig.send(rig.mention("outside the list", channel="C2", user="U5"))
        await rig.send(rig.message("no mention needed here", channel="C3"))
        await rig.observed.delivered(1)
        await rig.send(rig.message("a DM still works", channel="D1", channel_type="im"))
        await rig.observed.delivered(2)

        texts = await answered_texts(rig, "listed channel", 3)
        assert texts == ["no mention needed here", "a DM still works", "listed channel"]
        [notice] = rig.fake.calls_to("chat.postEphemeral")
        assert (notice.args["channel"], notice.args["user"]) == ("C2", "U5")
        assert "not enabled in this channel" in notice.args["text"]


async def test_direct_messages_can_be_turned_off(tmp_path: Path) -> None:
    async with slack_rig(tmp_path, slack={"dms": False}) as rig:
        await rig.send(rig.message("hello?", channel="D1", channel_type="im"))
        assert await answered_texts(rig, "in a channel", 1) == ["in a channel"]


async def test_empty_mention_gets_a_hint_not_a_model_call(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        payload = rig.event(type="app_mention", user="U1", text="<@UBOT>", channel="C1")
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)
        [hint] = rig.replies(payload["event"]["ts"])
        assert "didn't receive any text" in hint
        assert rig.llm.chat_requests() == [] and done.sent


async def test_hostile_payloads_do_not_break_the_bot(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        for event, status in (
            (
                {"type": "app_mention", "user": "U1", "text": None, "ts": "1.1", "channel": None},
                200,
            ),
            ({"type": "app_mention", "user": "U1", "text": 42, "ts": 7, "channel": "C1"}, 200),
            (
                {"type": "app_mention", "user": ["x"], "text": "hi", "ts": "1.2", "channel": "C1"},
                400,
            ),
            ({"type": "message", "channel": "D1", "channel_type": "im", "text": "\x00\x00"}, 200),
        ):
            # a user that is a list is not a Slack event at all: 400 (see test_slack_requests)
            assert (await rig.send(rig.event(**event)))[0] == status
        bad_json = {"Content-Type": "application/json"}
        async with rig.http.post(rig.service.url, data=b"\xff\xfe{", headers=bad_json) as response:
            assert response.status in (400, 401)
        # The NUL-only DM reaches the app as empty text and gets its hint.
        assert await answered_texts(rig, "still alive?", 2) == ["", "still alive?"]
