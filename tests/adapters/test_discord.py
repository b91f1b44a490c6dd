"""Discord messages through the guarded pipeline, over a real discord.py client.

Each test logs a real client in to the fake Discord on 127.0.0.1, dispatches
gateway events as Discord would, and checks what reached the REST API (the
sent payloads, typing, references) and what the SQLite decision log holds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.discord.stream import reply_nonce
from tests.stubs.discord_harness import discord_rig
from tests.stubs.discord_server import DROP, LOST
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.live_checks import states, words_shown

MESSAGE_CONTENT_INTENT = 1 << 15
MANAGE_GUILD = 1 << 5


def pings_nobody(allowed: dict[str, object]) -> bool:
    """An allowed_mentions payload under which Discord notifies no one at all."""
    return (
        allowed.get("parse") == []
        and set(allowed) <= {"parse", "replied_user"}
        and (allowed.get("replied_user") is not True)
    )


async def test_mention_is_answered_in_reply_with_typing_and_logged(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        posted = await fake.post("hello there", mention_bot=True)
        [delivered] = await rig.delivered(1)
        [reply] = fake.sent_to(fake.channel_id)
        assert reply["content"] == "you said: hello there"  # the bot mention was stripped
        assert reply["message_reference"]["message_id"] == int(posted["id"])
        assert pings_nobody(reply["allowed_mentions"])
        # typing was shown, and its request landed before the reply
        order = [c.path for c in fake.calls if c.path.startswith(f"/channels/{fake.channel_id}")]
        assert order.index(f"/channels/{fake.channel_id}/typing") < order.index(
            f"/channels/{fake.channel_id}/messages"
        )
        request = rig.observed.requests[0]
        assert (request.platform, request.channel_id, request.thread_id) == (
            "discord", str(fake.channel_id), posted["id"],
        )  # fmt: skip
        assert (request.user_id, request.user_name, request.message_id) == (
            fake.member["id"], "Bob", posted["id"],
        )  # fmt: skip
        assert delivered.sent and delivered.error is None
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "sent"
        # what the client asked Discord for at start
        [identify] = fake.identifies
        assert identify["intents"] & MESSAGE_CONTENT_INTENT
        [sync] = fake.command_syncs
        assert sync.method == "PUT" and sync.path.endswith("/commands")
        [group] = sync.body
        assert group["name"] == "guardbot"
        assert int(group["default_member_permissions"]) == MANAGE_GUILD
        assert fake.unhandled == []


async def test_direct_message_is_answered_without_a_mention(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        await fake.post("what is 2+2?", dm=True)
        await rig.delivered(1)
        [reply] = fake.sent_to(fake.dm_channel_id)
        assert reply["content"] == "you said: what is 2+2?"
        assert "message_reference" not in reply  # a DM is one conversation; no reply arrows
        assert pings_nobody(reply["allowed_mentions"])
        request = rig.observed.requests[0]
        assert (request.channel_id, request.thread_id) == (str(fake.dm_channel_id), "")
        # the DM is the conversation: the next message gets the first as history
        await fake.post("and times 3?", dm=True)
        await rig.delivered(2)
        sent = rig.llm.chat_requests()[-1].body["messages"]
        assert [m["content"] for m in sent[1:]] == [
            "what is 2+2?", "you said: what is 2+2?", "and times 3?",
        ]  # fmt: skip


async def test_blocked_message_gets_the_refusal(tmp_path: Path) -> None:
    guards = [{"name": "words", "kind": "blocklist", "stage": "input", "words": ["forbidden"]}]
    async with discord_rig(tmp_path, config={"guards": guards}) as rig:
        fake = rig.fake
        await fake.post("tell me the forbidden thing", mention_bot=True)
        [delivered] = await rig.delivered(1)
        [reply] = fake.sent_to(fake.channel_id)
        assert reply["content"] == "Sorry, I can't help with that."
        assert delivered.decision.blocked and delivered.decision.blocked_by == "words"
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.action.value == "blocked"
        assert stored.delivery.status == "sent"


async def test_long_reply_is_split_without_breaking_code_or_words(tmp_path: Path) -> None:
    code = "```python\n" + "\n".join(f"print('line {i:03d}')" for i in range(250)) + "\n```"
    answer = "Here is the program:\n\n" + code + "\n\n" + "That is all. " * 60

    async with discord_rig(tmp_path, script=lambda _rec: Reply(text=answer)) as rig:
        fake = rig.fake
        posted = await fake.post("write a long program", mention_bot=True)
        [delivered] = await rig.delivered(1)
        sends = fake.sent_to(fake.channel_id)
        assert all(pings_nobody(p["allowed_mentions"]) for p in [*sends, *fake.edits])
        assert sends[0]["message_reference"]["message_id"] == int(posted["id"])
        assert all("message_reference" not in p for p in sends[1:])
        # The reply is streamed: a message grows by edits, so what a user reads is the
        # fake's record of visible changes, checked in every state it went through.
        seen = states(fake.changes)
        for state in seen:
            assert all(len(m) <= 2000 for m in state)
            assert all(m.count("```") % 2 == 0 for m in state)  # every state renders
            assert words_shown(state) == words_shown([answer])[: len(words_shown(state))]
        final = seen[-1]
        assert len(final) >= 3 and len(sends) == len(final)
        lines = [ln for m in final for ln in m.split("\n") if ln.startswith("print(")]
        assert lines == [f"print('line {i:03d}')" for i in range(250)]  # each once, in order
        assert words_shown(final) == words_shown([answer])
        assert delivered.sent and delivered.error is None


async def test_everyone_in_model_output_pings_nobody(tmp_path: Path) -> None:
    hostile = "@everyone @here look <@&123456789012345678> and <@987654321098765432>!"
    async with discord_rig(tmp_path, script=lambda _rec: Reply(text=hostile)) as rig:
        fake = rig.fake
        await fake.post("ping everyone please", mention_bot=True)
        await rig.delivered(1)
        [reply] = fake.sent_to(fake.channel_id)
        assert reply["content"] == hostile  # shown as text...
        assert pings_nobody(reply["allowed_mentions"])  # ...but nobody is notified


async def test_bot_ignores_itself_other_bots_and_unaddressed_messages(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        await fake.post("first", mention_bot=True)
        await rig.delivered(1)  # the fake echoed this reply back as MESSAGE_CREATE
        await fake.post("I am a bot", mention_bot=True, author=fake.other_bot)
        await fake.post("just chatting, no mention")
        await fake.post("second", mention_bot=True)  # events arrive in order on one socket
        await rig.delivered(2)
        assert [r.text for r in rig.observed.requests] == ["first", "second"]
        echoed = [m for m in fake.messages.values() if m["author"]["id"] == fake.bot_user["id"]]
        assert len(echoed) == 2  # the bot did see its own messages, and ignored them
        assert len(fake.sent) == 2


async def test_failed_send_is_recorded_in_the_decision(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.send_failures.extend([403] * 8)  # the bot may never post here
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        attempts = [c for c in rig.fake.calls if c.method == "FAILED"]
        assert len(attempts) == 8 - len(rig.fake.send_failures) >= 1
        assert rig.fake.sent == [] and not delivered.sent
        assert delivered.error is not None and "403" in delivered.error
        assert "50013" in delivered.error  # Discord's "Missing Permissions" code
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "failed"
        assert stored.delivery.error == delivered.error


async def test_a_send_that_fails_once_is_retried_and_the_failure_still_recorded(
    tmp_path: Path,
) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.send_failures.append(403)  # the streamed first send fails; the final one not
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        [reply] = rig.fake.sent_to(rig.fake.channel_id)  # posted once: not lost, not doubled
        assert reply["content"] == "you said: hello"
        assert delivered.sent
        assert delivered.error is not None and "50013" in delivered.error
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "sent"
        assert stored.delivery.error == delivered.error
        # The stream record keeps the platform's side: the sends and edits Discord
        # accepted, and the failure, with the text of the delivery's error.
        stream = await rig.bot.log.stream_of(delivered.decision.id)
        assert stream is not None and stream.delivery_errors == [delivered.error]
        assert stream.updates == len(rig.fake.sent) + len(rig.fake.edits) == 1


async def test_rate_limited_send_is_retried_by_discord_py(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.send_failures.append(429)
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert delivered.sent
        posts = [c for c in rig.fake.calls if "/messages" in c.path or c.method == "FAILED"]
        assert [c.method for c in posts[-2:]] == ["FAILED", "POST"]
        assert len(rig.fake.sent) == 1
        # discord.py's own retry sent the same payload: the nonce survived it
        nonce = reply_nonce(int(delivered.decision.request.message_id), 0)
        assert [(c.body["nonce"], c.body["enforce_nonce"]) for c in posts[-2:]] == [
            (nonce, True), (nonce, True),
        ]  # fmt: skip


async def test_model_failure_still_answers_and_is_recorded(tmp_path: Path) -> None:
    def broken(_rec: Recorded) -> Reply:
        return Reply(status=500)

    async with discord_rig(tmp_path, script=broken) as rig:
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        [reply] = rig.fake.sent_to(rig.fake.channel_id)
        assert reply["content"].startswith("Sorry, I couldn't produce a reply right now")
        assert delivered.decision.action.value == "error" and delivered.sent


@pytest.mark.parametrize("failing_sends", [8, 1], ids=["every-retry-fails", "fails-once"])
async def test_a_part_that_fails_midway_is_recorded_with_where_it_stopped(
    tmp_path: Path, failing_sends: int
) -> None:
    answer = " ".join(f"word{i}" for i in range(1000))  # about 7,000 characters: 4 parts
    async with discord_rig(tmp_path, script=lambda _rec: Reply(text=answer)) as rig:
        rig.fake.send_failures.extend([0] + [403] * failing_sends)
        await rig.fake.post("a long one please", mention_bot=True)
        [delivered] = await rig.delivered(1)
        # where it stopped (a shared failure summary may add how often it happened)
        assert delivered.error is not None and "(after 1 of 4 parts)" in delivered.error
        final = states(rig.fake.changes)[-1]
        if failing_sends > 1:  # the second part never got through: only the first is up
            assert len(rig.fake.sent) == 1 and not delivered.sent
            assert words_shown(final) == answer.split()[: len(words_shown(final))]
        else:  # the next update sent it: every word is up once, the failure still recorded
            assert len(rig.fake.sent) == 4 and delivered.sent
            assert words_shown(final) == answer.split()


async def test_reply_is_sent_even_where_typing_is_forbidden(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.typing_status = 403
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert rig.fake.typing == [str(rig.fake.channel_id)]
        assert delivered.sent and rig.fake.sent[0]["content"] == "you said: hello"


async def test_a_dropped_connection_on_send_is_recorded_and_the_reply_sent_once(
    tmp_path: Path,
) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.send_failures.append(DROP)  # the streamed first send; the final one retries
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert [c.method for c in rig.fake.calls if c.method == "DROPPED"] == ["DROPPED"]
        assert [m["content"] for m in rig.fake.sent] == ["you said: hello"]  # once, not twice
        assert delivered.sent
        assert delivered.error is not None and "ServerDisconnected" in delivered.error
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "sent"  # not left "pending"
        assert stored.delivery.error == delivered.error


@pytest.mark.parametrize("failure", [DROP, LOST], ids=["dropped", "answer-lost"])
async def test_a_reply_not_streamed_whose_send_fails_is_sent_again_under_its_nonce(
    tmp_path: Path, failure: int
) -> None:
    """Not streamed, the reply is shown whole once it is on record, and the delivery's
    final round makes sure it reads so: a send that failed is tried again under the same
    nonce, and whether or not Discord had applied the first try, the channel gets the
    reply once."""
    async with discord_rig(tmp_path, config={"pipeline": {"stream": False}}) as rig:
        fake = rig.fake
        fake.send_failures.append(failure)
        posted = await fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        sends = [c for c in fake.calls if c.path.endswith("/messages") and c.method != "GET"]
        nonce = reply_nonce(int(posted["id"]), 0)
        assert [c.body["nonce"] for c in sends] == [nonce, nonce]  # the one retry, same nonce
        [reply] = fake.sent_to(fake.channel_id)
        assert reply["content"] == "you said: hello"
        assert delivered.sent
        assert delivered.error is not None and "ServerDisconnected" in delivered.error
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "sent"


async def test_a_send_created_but_its_answer_lost_is_not_posted_twice(tmp_path: Path) -> None:
    """Discord created the message, the connection dropped before its answer: the
    retry carries the same nonce, so Discord answers with that message."""
    async with discord_rig(tmp_path) as rig:
        fake = rig.fake
        fake.send_failures.append(LOST)  # the streamed first send; the final one retries
        posted = await fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        methods = [c.method for c in fake.calls if c.path.startswith("/channels/")]
        assert methods.count("LOST") == 1 and methods.count("REPEATED") == 1
        [reply] = fake.sent_to(fake.channel_id)  # one reply in the channel, not two
        assert reply["content"] == "you said: hello"
        assert (reply["nonce"], reply["enforce_nonce"]) == (reply_nonce(int(posted["id"]), 0), True)
        ours = [m for m in fake.messages.values() if m["author"]["id"] == fake.bot_user["id"]]
        assert [m["content"] for m in ours] == ["you said: hello"]
        assert delivered.sent
        assert delivered.error is not None and "ServerDisconnected" in delivered.error
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "sent"


async def test_a_connection_that_keeps_dropping_is_a_failed_delivery(tmp_path: Path) -> None:
    async with discord_rig(tmp_path) as rig:
        rig.fake.send_failures.extend([DROP] * 8)
        await rig.fake.post("hello", mention_bot=True)
        [delivered] = await rig.delivered(1)
        assert rig.fake.sent == [] and not delivered.sent
        assert delivered.error is not None and "ServerDisconnected" in delivered.error
        stored = await rig.bot.log.get(delivered.decision.id)
        assert stored is not None and stored.delivery.status == "failed"  # not left "pending"


async def test_no_more_than_max_in_flight_pipelines_run_at_once(tmp_path: Path) -> None:
    holds: list[asyncio.Event] = []
    open_at_arrival: list[int] = []
    stub: list[StubOpenAI] = []
    two_seen, three_seen = asyncio.Event(), asyncio.Event()

    def held(rec: Recorded) -> Reply:
        # called as each generation request arrives; it is already recorded as open
        open_at_arrival.append(sum(r.outcome == "open" for r in stub[0].chat_requests()))
        holds.append(hold := asyncio.Event())
        if len(holds) == 2:
            two_seen.set()
        elif len(holds) == 3:
            three_seen.set()
        return Reply(text=f"answer {len(holds)}", hold=hold)

    async with discord_rig(tmp_path, discord={"max_in_flight": 2}, script=held) as rig:
        stub.append(rig.llm)
        fake = rig.fake
        for text in ("one", "two", "three"):
            await fake.post(text, mention_bot=True)
        # typing for a message starts just before it asks for a slot, so all three are waiting
        # for a slot or running once the fake has seen three typing calls
        await fake.wait_for(lambda: len(fake.typing) == 3)
        await two_seen.wait()
        assert len(rig.observed.requests) == 2  # the third waits its turn (not dropped)
        assert len(rig.llm.chat_requests()) == 2
        holds[0].set()
        await rig.delivered(1)
        await three_seen.wait()  # a slot freed up: the third runs now
        holds[1].set()
        holds[2].set()
        await rig.delivered(3)
        assert max(open_at_arrival) == 2
        assert sorted(r.text for r in rig.observed.requests) == ["one", "three", "two"]
        assert len(fake.sent) == 3 and all(d.sent for d in rig.observed.deliveries)
