"""A Slack reply on its way out: rate limits, failures, long replies and shutdown.

The whole chain as in ``test_slack``: signed requests in, a real GuardBot with
its SQLite log, the real `openai` client against the stub, and the bot's Web
API client against the fake Slack. Replies stream by default (``stream_api =
"auto"``: Slack's streaming methods in a thread); where the way out differs
by ``stream_api``, each value is tested. What users saw is read from the
fake's record of every visible change, and what went wrong from the log.
Concurrency is shown with events (a gated model, held model pieces, held API
calls), never with sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.live import CUT_OFF_NOTE
from adapters.render import stream_line
from adapters.slack.post import SHUTDOWN_REPLY
from adapters.slots import NOT_ANSWERED
from bot.app import SHUTDOWN_ERROR
from tests.stubs.openai_server import Reply
from tests.stubs.slack_api import DROP
from tests.stubs.slack_harness import GatedModel, SlackRig, slack_rig

# The first write of a reply in each mode (a stream's start, or the placeholder's update).
FIRST_WRITE = [("auto", "chat.startStream"), ("update", "chat.update"), ("off", "chat.update")]
EVERY_POST = ("chat.postMessage", "chat.startStream")
ONE_CHUNK_A_SENTENCE = {"pipeline": {"chunk_chars": 1}}


@pytest.mark.parametrize(("stream_api", "method"), FIRST_WRITE)
async def test_rate_limited_write_is_retried_as_slack_asks(
    tmp_path: Path, stream_api: str, method: str
) -> None:
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, script=lambda _r: Reply(text="eventually")) as rig:
        rig.fake.fail(method, status=429, retry_after=0)
        payload = rig.mention("hi")
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)

        assert [c.status for c in rig.fake.calls_to(method)][:2] == [429, 200]
        assert rig.replies(payload["event"]["ts"]) == ["eventually"]
        assert done.sent and done.error is None


# An update says the whole text, so repeating one that Slack applied changes nothing.
REPEATABLE = [("update", "chat.update"), ("off", "chat.update")]


@pytest.mark.parametrize("status", [502, DROP], ids=["gateway error", "dropped connection"])
@pytest.mark.parametrize(("stream_api", "method"), REPEATABLE)
async def test_an_update_whose_answer_was_lost_is_retried(
    tmp_path: Path, stream_api: str, method: str, status: int
) -> None:
    slack = {"stream_api": stream_api}
    script = lambda _r: Reply(text="through the proxy")  # noqa: E731
    async with slack_rig(tmp_path, slack=slack, script=script) as rig:
        rig.fake.fail(method, status=status, applied=True)  # done, then the answer is lost
        payload = rig.mention("hi")
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)
        assert [c.status for c in rig.fake.calls_to(method)][:2] == [status, 200]
        assert rig.replies(payload["event"]["ts"]) == ["through the proxy"]
        assert done.sent


@pytest.mark.parametrize("status", [502, DROP], ids=["gateway error", "dropped connection"])
async def test_a_stream_start_whose_answer_was_lost_is_not_repeated(
    tmp_path: Path, status: int
) -> None:
    script = lambda _r: Reply(text="only once")  # noqa: E731
    async with slack_rig(tmp_path, slack={"stream_api": "auto"}, script=script) as rig:
        rig.fake.fail("chat.startStream", status=status, applied=True)  # started, answer lost
        payload = rig.mention("hi")
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)

        assert len(rig.fake.calls_to("chat.startStream")) == 1  # no second stream
        assert not rig.fake.calls_to("chat.update")  # nor the placeholder as a second reply
        assert rig.replies(payload["event"]["ts"]) == ["only once"]  # one reply, no placeholder
        # The message Slack started is left alone: nothing here can tell it apart from
        # another reply of this bot starting in the thread (see SlackMessages._start).
        [orphan] = [m for m in rig.fake.messages if m.text == "only once"]
        assert not rig.fake.calls_to("chat.stopStream")
        assert orphan.ts not in [c.args.get("ts") for c in rig.fake.calls_to("chat.delete")]
        assert not rig.fake.calls_to("conversations.replies")  # not even looked up
        assert not done.sent and done.error is not None
        assert done.error.startswith("slack chat.startStream: ")
        assert "not sent again" in done.error


@pytest.mark.parametrize("stream_api", ["auto", "update", "off"])
async def test_failed_post_is_recorded_in_the_delivery(tmp_path: Path, stream_api: str) -> None:
    async with slack_rig(tmp_path, slack={"stream_api": stream_api}) as rig:
        for method in EVERY_POST:  # the bot was removed from the channel: nothing gets in
            rig.fake.fail(method, error="not_in_channel", times=10)
        await rig.send(rig.mention("hi"))
        [done] = await rig.observed.delivered(1)

        assert not done.sent
        assert done.error is not None
        assert done.error.startswith("slack chat.postMessage: not_in_channel")
        stored = await rig.bot.log.get_stored(done.decision.id)
        assert stored is not None
        assert [(d.status, d.error) for d in stored.deliveries] == [("failed", done.error)]
        if stream_api != "off":  # streamed: the stream record says it too
            stream = await rig.bot.log.stream_of(done.decision.id)
            assert stream is not None
            assert (stream.updates, "; ".join(stream.delivery_errors)) == (0, done.error)


@pytest.mark.parametrize("stream_api", ["auto", "update"])
async def test_rate_limit_that_never_ends_is_a_failed_delivery(
    tmp_path: Path, stream_api: str
) -> None:
    slack = {"api_retries": 1, "placeholder": "", "stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack) as rig:
        for method in EVERY_POST:
            rig.fake.fail(method, status=429, retry_after=0, times=100)
        await rig.send(rig.mention("hi"))
        [done] = await rig.observed.delivered(1)

        assert not done.sent
        assert done.error is not None
        assert done.error.startswith(
            "slack chat.postMessage: rate limited (429), retries exhausted"
        )
        # Bounded: a one-chunk reply makes at most two rounds (the chunk, then the final
        # text), each one call and its one retry; a stream that Slack would not start is
        # asked once, then the reply updates.
        assert len(rig.fake.calls_to("chat.postMessage")) <= 4
        assert len(rig.fake.calls_to("chat.startStream")) == (2 if stream_api == "auto" else 0)
        assert rig.fake.changes == []  # nothing was ever shown


@pytest.mark.parametrize("stream_api", ["auto", "update", "off"])
async def test_long_reply_continues_in_more_messages(tmp_path: Path, stream_api: str) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 30 for i in range(12)]
    long_reply = "\n\n".join(paragraphs)
    assert len(long_reply) > 2 * 3900
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, script=lambda _r: Reply(text=long_reply)) as rig:
        payload = rig.mention("tell me everything")
        ts = payload["event"]["ts"]
        await rig.send(payload)
        [done] = await rig.observed.delivered(1)

        posted = rig.replies(ts)
        assert len(posted) >= 3 and all(len(p) <= 3900 for p in posted)
        assert "\n\n".join(posted).split() == long_reply.split()
        assert rig.assert_every_state_a_prefix() == long_reply.split()
        assert done.sent and done.error is None
        placeholder = rig.fake.calls_to("chat.postMessage")[0].args["text"]
        assert placeholder == "thinking…"
        if stream_api == "auto":  # each message is a stream of its own, each stopped
            assert len(rig.fake.calls_to("chat.startStream")) == len(posted)
            assert not any(m.streaming for m in rig.fake.messages)
        else:  # the placeholder became the first message
            assert rig.fake.calls_to("chat.update")[0].args["ts"] == rig.fake.changes[0][1]
        if stream_api == "off":  # split whole, between paragraphs
            assert rig.fake.calls_to("chat.update")[0].args["text"] == posted[0]
            assert all(p.startswith("Paragraph") for p in posted)


@asynccontextmanager
async def first_part_shown(
    tmp_path: Path, stream_api: str
) -> AsyncIterator[tuple[SlackRig, str, dict[int, asyncio.Event]]]:
    """A reply in three chunks, the model held before the second and the third (``gates``);
    yields (the rig, the thread, the gates) once the first chunk is shown."""
    gates = {1: asyncio.Event(), 2: asyncio.Event()}
    pieces = ["First part. ", "Second part. ", "Third part."]
    script = lambda _r: Reply(pieces=pieces, pauses=gates)  # noqa: E731
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, config=ONE_CHUNK_A_SENTENCE, script=script) as rig:
        payload = rig.mention("hi")
        ts = payload["event"]["ts"]
        await rig.send(payload)
        await rig.fake.wait_until(lambda: rig.replies(ts) == ["First part. "])
        yield rig, ts, gates


async def test_an_update_slack_rejects_mid_stream_is_on_the_stream_record(tmp_path: Path) -> None:
    async with first_part_shown(tmp_path, "update") as (rig, ts, gates):
        rig.fake.fail("chat.update", error="restricted_action")
        gates[1].set()  # the second chunk's update is refused; the model is still held
        await rig.fake.wait_until(lambda: rig.fake.calls_to("chat.update")[-1].error)
        gates[2].set()
        [done] = await rig.observed.delivered(1)

        assert rig.replies(ts) == ["First part. Second part. Third part."]
        assert done.sent and done.error == "slack chat.update: restricted_action"
        stream = await rig.bot.log.stream_of(done.decision.id)
        assert stream is not None and len(stream.chunks) == 3
        assert stream.delivery_errors == [done.error]
        made = [c for c in rig.fake.calls_to("chat.update") if c.error is None]
        assert stream.updates == len(made) == 2  # the first chunk, then the rest at once
        rig.assert_every_state_a_prefix()


LOST = [
    (502, "slack chat.appendStream: HTTP 502"),
    (DROP, "slack chat.appendStream: ServerDisconnectedError: Server disconnected"),
]


@pytest.mark.parametrize(("status", "why"), LOST, ids=["gateway error", "dropped connection"])
async def test_a_repaired_append_is_on_the_delivery_and_stream_records(
    tmp_path: Path, status: int, why: str
) -> None:
    async with first_part_shown(tmp_path, "auto") as (rig, ts, gates):
        rig.fake.fail("chat.appendStream", status=status, applied=True)  # appended, answer lost
        gates[1].set()
        await rig.fake.wait_until(lambda: rig.fake.calls_to("chat.update"))  # the repair
        gates[2].set()
        [done] = await rig.observed.delivered(1)

        assert rig.replies(ts) == ["First part. Second part. Third part."]
        assert len(rig.fake.calls_to("chat.appendStream")) == 1  # never sent again
        assert done.sent and done.error is not None
        assert done.error == f"repaired by an update: {why} (Slack may have applied it)"
        assert "part" not in done.error.lower()  # no message text in the record
        stored = await rig.bot.log.get_stored(done.decision.id)
        assert stored is not None and [(d.status, d.error) for d in stored.deliveries] == [
            ("sent", done.error)
        ]
        stream = await rig.bot.log.stream_of(done.decision.id)
        assert stream is not None and stream.delivery_errors == [done.error]
        assert "1 delivery failure(s): repaired by an update: slack chat.appendStream" in (
            stream_line(stream)  # as `guardbot show` prints it
        )
        rig.assert_every_state_a_prefix()


async def test_stop_lets_in_flight_replies_finish(tmp_path: Path) -> None:
    model = GatedModel("finished anyway")
    async with slack_rig(tmp_path, model=model) as rig:
        payload = rig.mention("slow one")
        await rig.send(payload)
        await model.started.wait()
        stopping = asyncio.create_task(rig.service.stop())
        await rig.fake.wait_until(lambda: rig.fake.calls_to("chat.postMessage"))
        assert not stopping.done()
        model.gate.set()
        await stopping
        [done] = rig.observed.deliveries
        assert done.sent and rig.replies(payload["event"]["ts"]) == ["finished anyway"]


async def test_stop_cuts_off_what_does_not_finish_in_time(tmp_path: Path) -> None:
    model = GatedModel()
    async with slack_rig(tmp_path, model=model, slack={"shutdown_timeout_s": 0.2}) as rig:
        payload = rig.mention("never answered")
        await rig.send(payload)
        await model.started.wait()
        await rig.fake.wait_until(lambda: rig.fake.calls_to("chat.postMessage"))
        await rig.service.stop()
        [update] = rig.fake.calls_to("chat.update")
        assert update.args["text"] == SHUTDOWN_REPLY
        assert rig.replies(payload["event"]["ts"]) == [SHUTDOWN_REPLY]
        [decision] = await rig.bot.log.query(limit=5)  # on record, though never answered
        assert decision.error == SHUTDOWN_ERROR and decision.request.text == "never answered"


async def test_stop_keeps_what_a_cut_off_stream_showed_and_says_so(tmp_path: Path) -> None:
    never = asyncio.Event()
    script = lambda _r: Reply(pieces=["Part one is here. ", "never sent"], pauses={1: never})  # noqa: E731
    slack = {"shutdown_timeout_s": 0.2}
    async with slack_rig(tmp_path, slack=slack, config=ONE_CHUNK_A_SENTENCE, script=script) as rig:
        payload = rig.mention("a long story")
        ts = payload["event"]["ts"]
        await rig.send(payload)
        await rig.fake.wait_until(lambda: rig.replies(ts) == ["Part one is here. "])
        await rig.service.stop()

        assert rig.replies(ts) == [f"Part one is here. \n\n{CUT_OFF_NOTE}"]
        assert not any(m.streaming for m in rig.fake.messages)  # the stream was stopped
        rig.assert_every_state_a_prefix()
        [generation] = rig.llm.chat_requests()
        await generation.done.wait()
        assert generation.closed_early  # the model stopped producing tokens
        [decision] = await rig.bot.log.query(limit=5)
        assert decision.error == SHUTDOWN_ERROR


async def test_stop_records_a_message_still_waiting_for_a_slot(tmp_path: Path) -> None:
    model = GatedModel("the first one's answer")
    async with slack_rig(tmp_path, model=model, slack={"max_in_flight": 1}) as rig:
        first, second = rig.mention("first"), rig.mention("second")
        await rig.send(first)
        await model.started.wait()  # "first" holds the only slot
        await rig.send(second)
        await rig.fake.wait_until(lambda: len(rig.fake.calls_to("chat.postMessage")) == 2)
        listeners = rig.service.listeners
        assert listeners is not None
        await rig.fake.wait_until(lambda: listeners.slots.waiting == 1)
        stopping = asyncio.create_task(rig.service.stop())
        # "second" is turned away (its placeholder says so) while "first" still runs...
        ts = second["event"]["ts"]
        await rig.fake.wait_until(lambda: rig.replies(ts) == [SHUTDOWN_REPLY])
        assert not stopping.done()
        model.gate.set()  # ...and the slot "first" frees now goes to no one
        await stopping

        assert [r.text for r in rig.observed.requests] == ["first"] and model.calls == 1
        assert rig.replies(first["event"]["ts"]) == ["the first one's answer"]
        records = {d.request.text: d for d in await rig.bot.log.query(limit=5)}
        assert sorted(records) == ["first", "second"]
        assert records["first"].delivery.status == "sent"
        queued = records["second"]
        assert (queued.action.value, queued.error) == ("error", NOT_ANSWERED)
        assert queued.delivery.status == "none" and queued.reply == ""
        assert (await rig.bot.log.verify()).ok


SCREENED = {
    "pipeline": {"chunk_chars": 1},
    "guards": [
        {"name": "pii", "kind": "pii", "stage": "output", "action": "redact"},
        {"name": "words", "kind": "blocklist", "stage": "output", "words": ["forbidden"]},
    ],
}


@pytest.mark.parametrize("stream_api", ["auto", "update"])
async def test_an_address_split_across_chunks_is_never_shown_unmasked(
    tmp_path: Path, stream_api: str
) -> None:
    pieces = ["Hello there. ", "Mail me at a.b@", "example.org please. ", "Bye now."]
    gates = {i: asyncio.Event() for i in (1, 2, 3)}
    script = lambda _r: Reply(pieces=pieces, pauses=gates)  # noqa: E731
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, config=SCREENED, script=script) as rig:
        payload = rig.mention("how do I reach you?")
        ts = payload["event"]["ts"]
        await rig.send(payload)
        await rig.fake.wait_until(lambda: rig.replies(ts) == ["Hello there. "])
        for gate in gates.values():  # one piece at a time, each after the last was shown
            shown = len(rig.fake.changes)
            gate.set()
            await rig.fake.wait_until(lambda: len(rig.fake.changes) > shown)  # noqa: B023
        [done] = await rig.observed.delivered(1)

        final = rig.assert_every_state_a_prefix()
        assert " ".join(final) == "Hello there. Mail me at [EMAIL] please. Bye now."
        assert not any("a.b@" in (text or "") for _, _, text in rig.fake.changes)
        assert not any("example.org" in c.args.get("markdown_text", "") for c in rig.fake.calls)
        assert done.sent and done.decision.reply.endswith("[EMAIL] please. Bye now.")


@pytest.mark.parametrize("stream_api", ["auto", "update"])
async def test_a_mid_stream_block_replaces_what_was_shown_with_the_refusal(
    tmp_path: Path, stream_api: str
) -> None:
    pieces = ["A fine start here. ", "Then a forbidden word. ", "And more."]
    gate, never = asyncio.Event(), asyncio.Event()
    script = lambda _r: Reply(pieces=pieces, pauses={1: gate, 2: never})  # noqa: E731
    slack = {"stream_api": stream_api}
    async with slack_rig(tmp_path, slack=slack, config=SCREENED, script=script) as rig:
        payload = rig.mention("tell me")
        ts = payload["event"]["ts"]
        await rig.send(payload)
        await rig.fake.wait_until(lambda: rig.replies(ts) == ["A fine start here. "])
        gate.set()
        [done] = await rig.observed.delivered(1)

        assert done.decision.blocked and done.decision.blocked_by == "words"
        assert rig.replies(ts) == ["Sorry, I can't help with that."]
        assert not any("forbidden" in (text or "") for _, _, text in rig.fake.changes)
        if stream_api == "auto":  # the stream is stopped, then updated to the refusal
            assert [c.method for c in rig.fake.calls[-2:]] == ["chat.stopStream", "chat.update"]
        stream = await rig.bot.log.stream_of(done.decision.id)
        assert stream is not None and stream.retracted and stream.stopped_at_chunk == 1
        assert stream.shown_chars == len("A fine start here. ")
        [generation] = rig.llm.chat_requests()
        await generation.done.wait()
        assert generation.closed_early  # the model was stopped mid-reply
