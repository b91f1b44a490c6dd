"""A streamed Discord reply, driven as the pipeline drives it, checked on the fake's record.

A real discord.py client logged in to the fake Discord shows the reply through
:class:`DiscordMessages` and :class:`LiveReply`; the driver calls ``show`` with
growing screened text (and ``retract``) exactly as the pipeline does. Time is
virtual (``Clock``), so the edit interval is proven without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import discord
import pytest

from adapters.discord.delivery import Typing
from adapters.discord.stream import DiscordMessages, reply_nonce
from adapters.live import Layout, LiveReply, Style
from tests.stubs.discord_harness import DiscordRig, discord_rig
from tests.stubs.discord_payloads import snowflake
from tests.stubs.discord_server import LOST
from tests.support.live_checks import Clock, states, words_shown, write_times

SENTENCES = [f"Sentence {i} says something useful about item {i}." for i in range(40)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[DiscordRig]:
    async with discord_rig(tmp_path) as rig:
        yield rig


def channel_of(rig: DiscordRig) -> discord.TextChannel:
    channel = rig.service.client.get_channel(rig.fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


def view_for(rig: DiscordRig, clock: Clock, **options: object) -> tuple[LiveReply, DiscordMessages]:
    rig.fake.clock = clock
    event = snowflake()  # the message being answered
    messages = DiscordMessages(channel_of(rig), event=event, **options)  # type: ignore[arg-type]
    return LiveReply(messages, interval_s=1.0, clock=clock, sleep=clock.sleep), messages


async def drive(rig: DiscordRig, view: LiveReply, clock: Clock, chunks: list[str]) -> str:
    """Show growing text, 0.25 s apart; every 4 chunks wait until the fake shows the latest."""
    text = ""
    for index, chunk in enumerate(chunks):
        text = f"{text} {chunk}".strip()
        await view.show(text)
        clock.now += 0.25
        if index == 0:
            await rig.fake.wait_for(lambda: len(rig.fake.sent) == 1)
        elif index % 4 == 3:
            await rig.fake.wait_for(partial(shows, rig, text))
    return text


def shows(rig: DiscordRig, latest: str) -> bool:
    return bool(rig.fake.changes) and rig.fake.changes[-1][2] == latest


def assert_prefixes(changes: list[tuple[float, str, str | None]], final: str) -> None:
    words = words_shown([final])
    for state in states(changes):
        shown = words_shown(state)
        assert shown == words[: len(shown)], f"not a prefix of what was released: {state}"


async def test_first_chunk_is_the_reply_then_edits_at_most_once_a_second(rig: DiscordRig) -> None:
    clock = Clock()
    channel = channel_of(rig)
    typing = Typing(channel)
    typing.start()
    view, messages = view_for(rig, clock, typing=typing)
    await rig.fake.wait_for(lambda: len(rig.fake.typing) == 1)  # typing before any text
    final = await drive(rig, view, clock, SENTENCES[:24])
    sent, error = await view.finish(final)

    assert (sent, error) == (True, None)
    fake = rig.fake
    assert len(fake.sent) == 1 and fake.sent[0]["content"] == SENTENCES[0]  # the first chunk
    assert len(fake.typing) == 1  # stopped at the first chunk, never refreshed after
    assert [m.content for m in messages.messages] == [final]
    assert fake.messages[int(fake.sent[0]["id"])]["content"] == final
    # Edits: at most one per second of (virtual) time, and chunks were merged.
    times = write_times(fake.changes)
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))
    assert 5 <= len(fake.edits) < 23
    assert len(fake.edits) <= (times[-1] - times[0]) / 1.0 + 1
    assert all(e["allowed_mentions"]["parse"] == [] for e in fake.edits + fake.sent)
    assert_prefixes(fake.changes, final)


async def test_a_long_reply_continues_in_a_second_message_with_fences_balanced(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, _ = view_for(rig, clock)
    code = [f"    value_{i} = compute({i})  # step {i} of the long example" for i in range(60)]
    chunks = ["Here is the code:\n```python", *code, "```", "That is all."]
    text = ""
    for chunk in chunks:  # released line by line, as a code reply is
        text = f"{text}\n{chunk}" if text else chunk
        await view.show(text)
        clock.now += 0.5
    sent, error = await view.finish(text)

    assert (sent, error) == (True, None)
    fake = rig.fake
    assert len(fake.sent) == 2  # past 2,000 characters: a second message
    for state in states(fake.changes):
        assert all(len(m) <= 2000 for m in state)
        assert all(m.count("```") % 2 == 0 for m in state), f"a fence left open: {state}"
    first, second = (fake.messages[int(m["id"])]["content"] for m in fake.sent)
    assert first.startswith("Here is the code:\n```python") and first.endswith("\n```")
    assert second.startswith("```python\n") and second.endswith("```\nThat is all.")
    assert_prefixes(fake.changes, text)


async def test_an_edit_the_platform_rejects_is_recorded_and_the_next_one_catches_up(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    rig.fake.edit_failures = [403]
    await view.show(SENTENCES[0])
    await rig.fake.wait_for(lambda: len(rig.fake.sent) == 1)
    clock.now += 1
    await view.show(" ".join(SENTENCES[:2]))
    await rig.fake.wait_for(lambda: any(c.method == "FAILED" for c in rig.fake.calls))
    final = " ".join(SENTENCES[:3])
    sent, error = await view.finish(final)

    assert sent  # the reply reads in full
    assert error is not None and "HTTP 403" in error  # the failed edit is on the record
    assert messages.messages[0].content == final
    assert [e["content"] for e in rig.fake.edits] == [final]


async def test_text_released_during_a_rate_limit_is_merged_into_the_next_edit(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    fake = rig.fake
    texts = [" ".join(SENTENCES[: i + 1]) for i in range(4)]
    await view.show(texts[0])
    await fake.wait_for(lambda: len(fake.sent) == 1)
    gate = asyncio.Event()
    fake.edit_gates.append(gate)
    fake.edit_failures = [429]
    clock.now += 1
    await view.show(texts[1])
    await fake.wait_for(lambda: any(c.method == "HELD" for c in fake.calls))
    await view.show(texts[2])  # released while the edit waits out a 429
    await view.show(texts[3])
    gate.set()
    sent, error = await view.finish(texts[3])

    assert (sent, error) == (True, None)
    assert sum(c.method == "FAILED" for c in fake.calls) == 1  # the 429
    # discord.py retried the limited edit once; then the latest text, texts[2] never sent.
    assert [e["content"] for e in fake.edits] == [texts[1], texts[3]]
    assert messages.messages[0].content == texts[3]


async def test_a_retraction_replaces_every_message_shown_with_the_refusal(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    text = ""
    for sentence in SENTENCES * 2:  # about 3,800 characters: two messages
        text = f"{text} {sentence}".strip()
        await view.show(text)
        clock.now += 0.5
    fake = rig.fake
    await fake.wait_for(
        lambda: len(fake.sent) == 2 and words_shown(states(fake.changes)[-1]) == text.split()
    )
    refusal = "Sorry, I can't help with that."
    await view.retract(refusal)
    await view.show(text + " more")  # nothing is shown after a retraction
    sent, error = await view.finish(refusal)

    assert (sent, error) == (True, None)
    assert len(fake.sent) == 2 and len(fake.deletes) == 1
    assert [m.content for m in messages.messages] == [refusal]
    assert states(fake.changes)[-1] == [refusal]
    assert_prefixes(fake.changes[:-2], text)  # before the retraction: prefixes only


async def test_a_send_whose_answer_was_lost_is_not_repeated_and_catches_up(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    fake = rig.fake
    fake.send_failures.append(LOST)  # created with the first chunk; the answer never arrives
    await view.show(SENTENCES[0])
    await fake.wait_for(lambda: any(c.method == "LOST" for c in fake.calls))
    clock.now += 1
    final = " ".join(SENTENCES[:3])
    sent, error = await view.finish(final)  # sends again, with the same nonce

    assert sent and error is not None and "ServerDisconnected" in error
    assert [c.method for c in fake.calls if c.method in ("LOST", "REPEATED")] == [
        "LOST", "REPEATED",
    ]  # fmt: skip
    [created] = fake.sent  # Discord answered the retry with the message the first try made...
    assert created["nonce"] == reply_nonce(messages.event, 0) and created["enforce_nonce"]
    assert [e["content"] for e in fake.edits] == [final]  # ...whose older text is then edited
    assert states(fake.changes)[-1] == [final]
    assert [m.content for m in messages.messages] == [final]


async def test_a_message_deleted_while_streaming_is_sent_again_under_a_new_nonce(
    rig: DiscordRig,
) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    fake = rig.fake
    await view.show(SENTENCES[0])
    await fake.wait_for(lambda: len(fake.sent) == 1)
    del fake.messages[int(fake.sent[0]["id"])]  # a moderator deleted it
    clock.now += 1
    final = " ".join(SENTENCES[:2])
    sent, error = await view.finish(final)

    assert (sent, error) == (True, None)
    assert [m["nonce"] for m in fake.sent] == [
        reply_nonce(messages.event, 0), reply_nonce(messages.event, 1),
    ]  # fmt: skip
    assert fake.sent[1]["content"] == final
    assert not any(c.method == "REPEATED" for c in fake.calls)


async def test_a_reply_that_was_not_streamed_is_sent_whole_as_before(rig: DiscordRig) -> None:
    clock = Clock()
    view, messages = view_for(rig, clock)
    sent, error = await view.finish("just the answer")
    assert (sent, error) == (True, None)
    assert [m["content"] for m in rig.fake.sent] == ["just the answer"]
    assert rig.fake.edits == []


def test_layout_seals_a_full_message_inside_code_without_losing_or_splitting_a_line() -> None:
    # Pieces of 57 characters end mid-word; the first message fills up inside the
    # code block after one such piece, so the seal must move that partial word on.
    code = "```python\n" + "\n".join(f"print('line {i:03d}')" for i in range(250)) + "\n```"
    text = "Here is the program:\n\n" + code + "\n\n" + "That is all. " * 60
    layout, sealed = Layout(Style(limit=2000)), list[str]()
    for end in [*range(57, len(text), 57), len(text)]:
        messages = layout.update(text[:end])
        assert messages[: len(sealed)] == sealed  # a sealed message never changes
        sealed = messages[:-1]
        assert all(len(m) <= 2000 and m.count("```") % 2 == 0 for m in messages)
        assert words_shown(messages) == words_shown([text[:end]])  # nothing lost or doubled
    lines = [ln for m in messages for ln in m.split("\n") if ln.startswith("print(")]
    assert len(messages) == 3 and lines == [f"print('line {i:03d}')" for i in range(250)]
