"""A streamed Slack reply, driven as the pipeline drives it, checked on the fake Web API.

slack-sdk's real client (with the adapter's retry handlers) talks to the fake
Slack, which serves chat.startStream / appendStream / stopStream and records
every body and every visible change. Time is virtual (``Clock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.live import LiveReply
from adapters.slack.post import Poster, retry_handlers
from adapters.slack.stream import SlackMessages
from tests.stubs.slack_api import BOT_TOKEN, DROP, FakeSlack
from tests.support.live_checks import Clock, states, words_shown, write_times

SENTENCES = [f"Sentence {i} says something useful about item {i}." for i in range(40)]
CHANNEL = "C1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def reply_in(fake: FakeSlack, clock: Clock, *, streams: bool, limit: int = 3900) -> LiveReply:
    fake.clock = clock
    client = AsyncWebClient(
        token=BOT_TOKEN, base_url=fake.api_url, retry_handlers=retry_handlers(3)
    )
    poster = Poster(client, limit=limit, streams=streams)
    thread = fake.add_message(CHANNEL, "a question", user="U1")
    messages = SlackMessages(poster, CHANNEL, thread, team_id="T1", user_id="U1")
    return LiveReply(messages, interval_s=1.0, clock=clock, sleep=clock.sleep)


async def drive(fake: FakeSlack, view: LiveReply, clock: Clock, count: int) -> str:
    """Show growing text, 0.25 s apart; every 4 chunks wait until the fake shows the latest."""
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    text = ""
    for index in range(count):
        text = f"{text} {SENTENCES[index]}".strip()
        await view.show(text)
        clock.now += 0.25
        if index % 4 == 3 or index == 0:
            words = text.split()
            await fake.wait_until(lambda: shown_now(fake) == words)  # noqa: B023 - awaited here
    return text


def shown_now(fake: FakeSlack) -> list[str]:
    return words_shown([m for m in states(fake.changes)[-1] if m != "thinking…"])


def assert_prefixes(fake: FakeSlack, final: str) -> None:
    words = words_shown([final])
    for state in states(fake.changes):
        shown = words_shown([m for m in state if m != "thinking…"])
        assert shown == words[: len(shown)], f"not a prefix of what was released: {state}"


async def test_a_stream_replaces_the_placeholder_and_appends_at_most_once_a_second(
    fake: FakeSlack,
) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    final = await drive(fake, view, clock, 20)
    assert await view.finish(final) == (True, None)

    start, *appends = fake.calls_to("chat.startStream") + fake.calls_to("chat.appendStream")
    assert start.args["markdown_text"] == SENTENCES[0]
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == ("T1", "U1")
    assert len(fake.calls_to("chat.delete")) == 1  # the placeholder gave way to the stream
    assert len(fake.calls_to("chat.stopStream")) == 1
    writes = [c.at for c in fake.calls if c.method.endswith("Stream")]
    assert all(b - a >= 1.0 for a, b in zip(writes, writes[1:], strict=False))
    assert 3 <= len(appends) < 19  # chunks were merged
    (reply,) = [m for m in fake.messages if m.bot_id and m.text != "thinking…"]
    assert reply.text == final and not reply.streaming
    assert_prefixes(fake, final)


async def test_where_streams_are_refused_the_placeholder_is_updated_and_continued(
    fake: FakeSlack,
) -> None:
    clock = Clock()
    fake.fail("chat.startStream", error="not_allowed")
    view = reply_in(fake, clock, streams=True, limit=500)
    final = await drive(fake, view, clock, 24)  # about 1,150 characters: three messages
    assert await view.finish(final) == (True, None)

    assert len(fake.calls_to("chat.startStream")) == 1  # asked once, then updates
    updates = fake.calls_to("chat.update")
    assert updates[0].args["text"] == SENTENCES[0]  # the placeholder became the reply
    assert len(fake.calls_to("chat.postMessage")) == 3  # placeholder + two continuations
    assert all(len(text or "") <= 500 for _, _, text in fake.changes)
    # One round of writes (a full message's last update and the next one's post) a second.
    rounds = sorted(set(write_times(fake.changes)[1:]))  # after the placeholder
    assert all(b - a >= 1.0 for a, b in zip(rounds, rounds[1:], strict=False))
    assert_prefixes(fake, final)
    assert words_shown(states(fake.changes)[-1]) == final.split()


async def test_a_rate_limited_update_is_waited_out_and_merged(fake: FakeSlack) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=False)
    texts = [" ".join(SENTENCES[: i + 1]) for i in range(4)]
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    await view.show(texts[0])
    await fake.wait_until(lambda: fake.changes[-1][2] == texts[0])
    gate = fake.hold("chat.update")
    fake.fail("chat.update", status=429, retry_after=0)
    clock.now += 1
    await view.show(texts[1])
    await fake.wait_until(lambda: len(fake.calls_to("chat.update")) == 2)
    await view.show(texts[2])  # released while the update is held, then limited
    await view.show(texts[3])
    gate.set()
    assert await view.finish(texts[3]) == (True, None)

    bodies = [c.args["text"] for c in fake.calls_to("chat.update")]
    assert bodies == [texts[0], texts[1], texts[1], texts[3]]  # texts[2] merged away
    assert [c.status for c in fake.calls_to("chat.update")] == [200, 429, 200, 200]


async def test_a_retraction_stops_the_stream_and_updates_it_to_the_refusal(
    fake: FakeSlack,
) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    shown = await drive(fake, view, clock, 8)
    await view.retract("Sorry, I can't help with that.")
    assert await view.finish("Sorry, I can't help with that.") == (True, None)

    assert [c.method for c in fake.calls[-2:]] == ["chat.stopStream", "chat.update"]
    assert states(fake.changes)[-1] == ["Sorry, I can't help with that."]
    assert_prefixes_before_the_retraction = fake.changes[:-1]
    for state in states(assert_prefixes_before_the_retraction):
        rest = words_shown([m for m in state if m != "thinking…"])
        assert rest == shown.split()[: len(rest)]


async def test_an_update_slack_rejects_is_recorded(fake: FakeSlack) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=False)
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    await view.show(SENTENCES[0])
    await fake.wait_until(lambda: fake.changes[-1][2] == SENTENCES[0])
    fake.fail("chat.update", error="restricted_action")
    clock.now += 1
    await view.show(" ".join(SENTENCES[:2]))
    await fake.wait_until(lambda: any(c.error == "restricted_action" for c in fake.calls))
    sent, error = await view.finish(" ".join(SENTENCES[:3]))
    assert sent and error == "slack chat.update: restricted_action"
    assert states(fake.changes)[-1][-1] == " ".join(SENTENCES[:3])


async def test_a_stream_cannot_ping_or_disguise_a_link(fake: FakeSlack) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    first = "Hello <!channel> and <@U2>."
    final = f"{first} Log in at [https://bank.example](https://evil.example) now."
    await view.show(first)
    await fake.wait_until(lambda: bool(fake.calls_to("chat.startStream")))
    clock.now += 1
    await view.show(final)
    assert await view.finish(final) == (True, None)

    text = "".join(
        str(c.args.get("markdown_text", "")) for c in fake.calls if c.method.endswith("Stream")
    )
    assert text == (
        "Hello &lt;!channel&gt; and &lt;@U2&gt;. Log in at "
        "[https://bank.example] (https://evil.example) now."
    )


LOST_ANSWERS = [(502, "a gateway error"), (DROP, "a dropped connection")]
GROWING = [" ".join(SENTENCES[: i + 1]) for i in range(4)]  # a reply as it is released


async def streaming(fake: FakeSlack, clock: Clock) -> LiveReply:
    """A reply whose stream has started, showing ``GROWING[0]``."""
    view = reply_in(fake, clock, streams=True)
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    await view.show(GROWING[0])
    await fake.wait_until(lambda: shown_now(fake) == GROWING[0].split())
    return view


@pytest.mark.parametrize(("status", "what"), LOST_ANSWERS, ids=[w for _, w in LOST_ANSWERS])
async def test_an_append_slack_applied_but_did_not_confirm_is_not_repeated(
    fake: FakeSlack, status: int, what: str
) -> None:
    clock = Clock()
    view, texts = await streaming(fake, clock), GROWING
    fake.fail("chat.appendStream", status=status, applied=True)  # appended, answer lost
    clock.now += 1
    await view.show(texts[1])
    await fake.wait_until(lambda: fake.calls_to("chat.update"))
    clock.now += 1
    await view.show(texts[2])
    assert await view.finish(texts[3]) == (True, None)

    assert len(fake.calls_to("chat.appendStream")) == 1  # never sent again
    assert_prefixes(fake, texts[3])  # in particular, no sentence shows twice
    (reply,) = [m for m in fake.messages if m.bot_id and m.text != "thinking…"]
    assert reply.text == texts[3] and not reply.streaming
    # From the lost answer on, the message is stopped and updated, never appended to.
    methods = [c.method for c in fake.calls]
    after = methods[methods.index("chat.appendStream") + 1 :]
    assert after == ["chat.stopStream", "chat.update", "chat.update"]
    # No round failed, but the repair is kept for the delivery record, without text.
    assert isinstance(view.surface, SlackMessages)
    [repaired] = view.surface.repaired
    assert repaired.startswith("repaired by an update: slack chat.appendStream: ")
    assert "Sentence" not in repaired


async def test_an_append_whose_repair_failed_says_both_and_is_updated_next_round(
    fake: FakeSlack,
) -> None:
    clock = Clock()
    view, texts = await streaming(fake, clock), GROWING
    fake.fail("chat.appendStream", status=502, applied=True)
    fake.fail("chat.update", error="restricted_action")
    clock.now += 1
    await view.show(texts[1])
    await fake.wait_until(lambda: fake.calls_to("chat.update"))
    sent, error = await view.finish(texts[2])

    assert sent and error == (
        "slack chat.appendStream: HTTP 502; the repair failed: slack chat.update: restricted_action"
    )
    assert isinstance(view.surface, SlackMessages)
    assert view.surface.repaired == []  # what failed is reported once, as a failure
    assert len(fake.calls_to("chat.appendStream")) == 1
    (reply,) = [m for m in fake.messages if m.bot_id and m.text != "thinking…"]
    assert reply.text == texts[2] and not reply.streaming
    assert_prefixes(fake, texts[2])


async def test_a_retraction_whose_stop_failed_stops_the_stream_before_updating_it(
    fake: FakeSlack,
) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    await drive(fake, view, clock, 8)
    fake.fail("chat.stopStream", status=503)
    await view.retract("Sorry, I can't help with that.")
    await fake.wait_until(lambda: any(c.status == 503 for c in fake.calls))
    sent, error = await view.finish("Sorry, I can't help with that.")

    assert sent and error == "slack chat.stopStream: HTTP 503"
    done = [c.method for c in fake.calls if c.status == 200 and c.error is None]
    assert done[-2:] == ["chat.stopStream", "chat.update"]
    assert states(fake.changes)[-1] == ["Sorry, I can't help with that."]
    assert not any(m.streaming for m in fake.messages)


async def test_a_retraction_that_cannot_be_shown_deletes_the_reply(fake: FakeSlack) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    shown = await drive(fake, view, clock, 8)
    fake.fail("chat.stopStream", status=500, times=10)
    fake.fail("chat.update", error="restricted_action", times=10)
    await view.retract("Sorry, I can't help with that.")
    sent, error = await view.finish("Sorry, I can't help with that.")

    assert not sent and error is not None
    assert error.endswith("the retracted reply was deleted")
    assert states(fake.changes)[-1] == []  # nothing of the retracted text is left up
    assert not any(m.text == shown for m in fake.messages)


async def test_a_stream_whose_first_stop_fails_is_not_started_again(fake: FakeSlack) -> None:
    clock = Clock()
    view = reply_in(fake, clock, streams=True)
    assert isinstance(view.surface, SlackMessages)
    await view.surface.post_placeholder("thinking…")
    fake.fail("chat.stopStream", error="internal_error")
    await view.show(SENTENCES[0])
    assert await view.finish(SENTENCES[0]) == (True, None)  # shown whole in the first round

    assert len(fake.calls_to("chat.startStream")) == 1
    assert [c.error for c in fake.calls_to("chat.stopStream")] == ["internal_error", None]
    (reply,) = [m for m in fake.messages if m.bot_id]
    assert reply.text == SENTENCES[0] and not reply.streaming
