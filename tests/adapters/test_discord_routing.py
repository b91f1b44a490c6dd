"""Which Discord messages are answered, where, and with which conversation history.

Threads the bot started, reply chains, the channel allow-list, reply-all
channels, role mentions and quoted replies, all through the real client and
the real GuardBot: history is checked in what the stub LLM was sent.
"""

from __future__ import annotations

import json
from pathlib import Path

from adapters.discord.messages import Conversations
from tests.stubs.discord_harness import discord_rig


def contents(rig_llm_request: dict[str, object]) -> list[str]:
    messages = rig_llm_request["messages"]
    assert isinstance(messages, list)
    return [m["content"] for m in messages if m["role"] != "system"]


async def test_started_thread_answers_follow_ups_without_a_mention(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, discord={"start_threads": True}) as rig:
        fake = rig.fake
        posted = await fake.post("hello thread\nsecond line", mention_bot=True)
        await rig.delivered(1)
        [thread] = fake.threads_created
        assert thread["name"] == "guardbot" and thread["id"] == posted["id"]
        [first] = fake.sent_to(thread["id"])
        assert "message_reference" not in first  # the thread is the conversation
        assert fake.sent_to(fake.channel_id) == []
        await fake.post("follow-up, no mention", channel_id=int(thread["id"]))
        await rig.delivered(2)
        assert len(fake.sent_to(thread["id"])) == 2
        assert contents(rig.llm.chat_requests()[-1].body) == [
            "hello thread\nsecond line",
            "you said: hello thread\nsecond line",
            "follow-up, no mention",
        ]
        for request in rig.observed.requests:  # per-channel settings follow the parent
            assert (request.channel_id, request.thread_id) == (str(fake.channel_id), thread["id"])


async def test_a_blocked_message_never_names_a_thread(tmp_path: Path) -> None:
    """The thread exists before the guards decide, so its title must not carry user text."""
    guards = [{"name": "words", "kind": "blocklist", "stage": "input", "words": ["forbidden"]}]
    discord_cfg = {"start_threads": True}
    async with discord_rig(tmp_path, discord=discord_cfg, config={"guards": guards}) as rig:
        fake = rig.fake
        await fake.post("the forbidden words, as a title", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert delivered.decision.blocked
        [thread] = fake.threads_created
        assert thread["name"] == "guardbot"
        [reply] = fake.sent_to(thread["id"])
        assert reply["content"] == "Sorry, I can't help with that."
        # nothing the bot sent to Discord (thread name, messages, typing) carries the text
        assert not any("forbidden" in json.dumps(call.body) for call in fake.calls)


async def test_someone_elses_thread_needs_a_mention(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        thread_id = await fake.open_thread("people talking")
        await fake.post("not for the bot", channel_id=thread_id)
        posted = await fake.post("now for the bot", channel_id=thread_id, mention_bot=True)
        await rig.delivered(1)
        assert [r.text for r in rig.observed.requests] == ["now for the bot"]
        [reply] = fake.sent_to(thread_id)
        assert reply["message_reference"]["message_id"] == int(posted["id"])


async def test_reply_to_the_bot_continues_the_conversation(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        first = await fake.post("my name is Ada", mention_bot=True)
        await rig.delivered(1)
        bot_reply = fake.messages[max(fake.messages)]
        assert bot_reply["author"]["id"] == fake.bot_user["id"]
        await fake.post("what is my name?", reference=bot_reply)  # a reply needs no mention
        await rig.delivered(2)
        assert contents(rig.llm.chat_requests()[-1].body) == [
            "my name is Ada", "you said: my name is Ada", "what is my name?",
        ]  # fmt: skip
        assert [r.thread_id for r in rig.observed.requests] == [first["id"], first["id"]]
        # after a restart the adapter has forgotten its replies: the chain is walked instead
        rig.service.conversations = Conversations()
        latest = fake.messages[max(fake.messages)]
        await fake.post("and again?", reference=latest)
        await rig.delivered(3)
        assert rig.observed.requests[-1].thread_id == first["id"]
        assert len(contents(rig.llm.chat_requests()[-1].body)) == 5


async def test_a_fresh_mention_starts_a_fresh_conversation(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        await rig.fake.post("my name is Ada", mention_bot=True)
        await rig.delivered(1)
        await rig.fake.post("what is my name?", mention_bot=True, author=rig.fake.admin)
        await rig.delivered(2)
        assert contents(rig.llm.chat_requests()[-1].body) == ["what is my name?"]


async def test_reply_to_another_users_message_is_quoted_and_screened(tmp_path: Path) -> None:
    guards = [{"name": "words", "kind": "blocklist", "stage": "input", "words": ["secret"]}]
    async with discord_rig(tmp_path, config={"guards": guards}) as rig:
        fake = rig.fake
        claim = await fake.post("the sky is green", author=fake.admin)
        await fake.post("is this true?", mention_bot=True, reference=claim)
        await rig.delivered(1)
        assert rig.observed.requests[0].text == "[replying to Ada: the sky is green]\nis this true?"
        hidden = await fake.post("the secret is 42", author=fake.admin)
        await fake.post("summarise this", mention_bot=True, reference=hidden)
        [_, delivered] = await rig.delivered(2)
        assert delivered.decision.blocked  # the quoted text went through the input guards


async def test_allow_list_reply_all_channels_and_role_mentions(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        rig.service.config = rig.service.config.model_copy(
            update={
                "channels": [str(fake.channel_id)],
                "reply_all_channels": [str(fake.channel_id)],
            }
        )
        await fake.post("elsewhere", mention_bot=True, channel_id=fake.other_channel_id)
        await fake.post("no mention needed here")
        await fake.post("via the role", mention_role=True)
        await rig.delivered(2)
        assert [r.text for r in rig.observed.requests] == ["no mention needed here", "via the role"]
        assert fake.sent_to(fake.other_channel_id) == []


async def test_dms_can_be_turned_off(tmp_path: Path) -> None:
    async with discord_rig(tmp_path, discord={"dms": False}) as rig:
        await rig.fake.post("hello?", dm=True)
        await rig.fake.post("barrier", mention_bot=True)
        await rig.delivered(1)
        assert [r.text for r in rig.observed.requests] == ["barrier"]


async def test_an_empty_mention_gets_a_prompt_not_an_error(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        await rig.fake.post("", mention_bot=True)
        [delivered] = await rig.delivered(1)
        [reply] = rig.fake.sent_to(rig.fake.channel_id)
        assert reply["content"].startswith("I didn't receive any text")
        assert rig.llm.chat_requests() == []
        assert delivered.sent
