"""Best-of-N end to end: config.toml -> PolicyBuilder -> Pipeline -> the stub over HTTP.

Every test drives the real `openai` client against the stub on 127.0.0.1 and
checks the decision: every candidate, its verdicts, its scores, the choice and
why. Cancellation is proven from the stub's records, never from timing; where
"the faster candidate" decides, the test releases candidates in order
(:class:`Race`) instead of giving them different delays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.guards.config import MaxLengthGuardConfig
from middleware.guards.guard import GuardContext, verdict
from middleware.pipeline.policy import ConfiguredGuard
from middleware.pipeline.run import Pipeline
from middleware.types import Action, Outcome, Stage, Verdict
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.selection_support import (
    Harness,
    Race,
    Router,
    choose,
    config_text,
    judge_labels,
    reply_under_review,
    request,
    scores_reply,
)

THREE = 'best_of = 3\nmodels = ["cand-a", "cand-b", "cand-c"]\njudge_model = "judge"'
SHORT_OUTPUT_GUARD = """
[[guards]]
name = "short"
kind = "max_length"
stage = "output"
max_chars = 60
"""
LONG = "This reply rambles on far too long to pass the output length guard at all."


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.close()


async def settled(stub: StubOpenAI) -> list[Recorded]:
    """Every request the stub saw, once the server side has finished with each."""
    recs = list(stub.chat_requests())
    async with asyncio.timeout(5):
        for rec in recs:
            await rec.done.wait()
    return recs


async def test_judge_picks_mapped_candidate_and_records_everything(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    router = Router(
        {
            "cand-a": Reply("Paris."),
            "cand-b": Reply("It is Paris, of course."),
            "cand-c": Reply("Lyon."),
        },
        judge=choose("of course", reason="complete and correct"),
    )
    stub_llm.script = router
    _, policy = harness.policy(
        config_text(stub_llm.base_url, THREE + '\nselection = "judge"', SHORT_OUTPUT_GUARD)
    )

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.REPLIED
    assert decision.reply == "It is Paris, of course."
    chosen = [c for c in decision.candidates if c.chosen]
    assert [c.index for c in chosen] == [1] and chosen[0].model == "cand-b"
    sel = decision.selection
    assert sel is not None and sel.method == "judge" and sel.fallback_from == []
    assert "complete and correct" in sel.reasoning
    # The mapping is exact and auditable: the label shown for candidate #1 is the one chosen.
    judge_rec = Router.selection(await settled(stub_llm))[0]
    shown = judge_labels(judge_rec)
    for label, index in sel.labels.items():
        assert shown[label] == decision.candidates[index].text
    assert sorted(sel.labels.values()) == [0, 1, 2]
    # The judge asked for strict JSON-schema output naming only the offered labels.
    fmt = judge_rec.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["choice"]["enum"] == list(sel.labels)
    assert judge_rec.body["model"] == "judge"
    # Every candidate is recorded with its output verdict; the judge call is paid for.
    for cand in decision.candidates:
        assert cand.safe is True
        assert [v.guard for v in decision.verdicts_for(cand.index)] == ["short"]
    purposes = [c.purpose for c in decision.llm_calls]
    assert purposes.count("generation") == 3 and purposes.count("selection") == 1


HOSTILE_JUDGE = [
    pytest.param("Candidate 2", id="candidate-2"),
    pytest.param("the second one", id="the-second-one"),
    pytest.param("10", id="bare-number"),
    pytest.param('{"choice": "Z", "reason": "out of range"}', id="out-of-range-label"),
    pytest.param('{"choice": 2, "reason": "an index"}', id="numeric-choice"),
    pytest.param('{"choice": "Candidate B", "reason": "prose label"}', id="label-in-prose"),
    pytest.param('{"choice": "A", "choice": "B", "reason": "two"}', id="duplicate-keys"),
    pytest.param('{"reason": "forgot to choose"}', id="no-choice"),
    pytest.param("I think B is best because it is complete.", id="prose-only"),
    pytest.param('{"choice": "B", "reason": "cut off', id="truncated-json"),
    pytest.param("", id="empty"),
    pytest.param('["B"]', id="json-array"),
]


@pytest.mark.parametrize("judge_text", HOSTILE_JUDGE)
async def test_hostile_judge_output_falls_back_to_first(
    stub_llm: StubOpenAI, harness: Harness, judge_text: str
) -> None:
    race = Race(stub_llm)
    stub_llm.script = Router(
        {
            "cand-a": race.reply("cand-a", "Paris."),
            "cand-b": race.reply("cand-b", "Paris?"),
            "cand-c": race.reply("cand-c", "Paris!"),
        },
        judge=lambda _r: Reply(judge_text),
    )
    _, policy = harness.policy(config_text(stub_llm.base_url, THREE + '\nselection = "judge"'))

    # cand-c answers first; the others only once the pipeline has its reply.
    decision = await race.run(policy, ["cand-c"], ["cand-a", "cand-b"])

    assert decision.action is Action.REPLIED
    sel = decision.selection
    assert sel is not None
    assert sel.method == "first" and sel.fallback_from == ["judge"]
    assert "judge failed" in sel.reasoning and "fell back to first" in sel.reasoning
    # first = the fastest safe candidate, cand-c (released first)
    assert decision.reply == "Paris!"
    assert [c.index for c in decision.candidates if c.chosen] == [2]
    judge_call = next(c for c in decision.llm_calls if c.purpose == "selection")
    assert judge_call.error and "unparseable judge reply" in judge_call.error


async def test_judge_naming_a_dropped_candidate_falls_back(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    # cand-c is unsafe and dropped; the judge sees two labels and names a third.
    race = Race(stub_llm)
    stub_llm.script = Router(
        {
            "cand-a": race.reply("cand-a", "Paris."),
            "cand-b": race.reply("cand-b", "Paris!"),
            "cand-c": race.reply("cand-c", LONG),
        },
        judge=lambda _r: Reply(json.dumps({"choice": "C", "reason": "the long one"})),
    )
    _, policy = harness.policy(
        config_text(stub_llm.base_url, THREE + '\nselection = "judge"', SHORT_OUTPUT_GUARD)
    )

    # cand-b is the faster of the two safe ones: it answers before cand-a is let go.
    decision = await race.run(policy, ["cand-b"], ["cand-a", "cand-c"])

    sel = decision.selection
    assert sel is not None and sel.fallback_from == ["judge"] and sel.method == "first"
    assert "not an offered label (A, B)" in sel.reasoning
    assert sorted(sel.labels.values()) == [0, 1]  # the dropped candidate was never shown
    assert decision.candidates[2].safe is False and not decision.candidates[2].chosen
    assert decision.reply == "Paris!"
    unsafe = decision.verdicts_for(2)
    assert unsafe[0].blocking and unsafe[0].outcome is Outcome.BLOCK


@pytest.mark.parametrize(
    "judge_reply",
    [
        pytest.param(Reply(status=500), id="http-500"),
        pytest.param(Reply(raw_body="<html>bad gateway</html>"), id="malformed-body"),
        pytest.param(Reply('{"choice": "A", "reason": "slow"}', delay_s=30), id="timeout"),
    ],
)
async def test_judge_call_failure_falls_back(
    stub_llm: StubOpenAI, harness: Harness, judge_reply: Reply
) -> None:
    stub_llm.script = Router(
        {"cand-a": Reply("one"), "cand-b": Reply("two"), "cand-c": Reply("three")},
        judge=lambda _r: judge_reply,
    )
    text = config_text(stub_llm.base_url, THREE + '\nselection = "judge"')
    _, policy = harness.policy(text.replace("timeout_s = 5", "timeout_s = 1"))

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.REPLIED
    sel = decision.selection
    assert sel is not None and sel.method == "first" and sel.fallback_from == ["judge"]
    assert "judge call failed" in sel.reasoning


async def test_criteria_weighted_total_wins_and_ties_go_to_faster(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    by_text = {
        "Short.": {"accuracy": 9, "tone": 4},  # 9*2 + 4 = 22
        "Medium answer.": {"accuracy": 8, "tone": 6},  # 8*2 + 6 = 22, slower than "Short."
        "Slow but fine.": {"accuracy": 5, "tone": 10},  # 20
    }
    all_arrived = asyncio.Event()  # no evaluation answers until all three were asked

    def criteria(rec: Recorded) -> Reply:
        if len(Router.selection(stub_llm.chat_requests())) == 3:
            all_arrived.set()
        return dataclasses.replace(scores_reply(by_text[reply_under_review(rec)]), hold=all_arrived)

    race = Race(stub_llm)
    stub_llm.script = Router(
        {
            "cand-a": race.reply("cand-a", "Medium answer."),
            "cand-b": race.reply("cand-b", "Short."),
            "cand-c": race.reply("cand-c", "Slow but fine."),
        },
        criteria=criteria,
    )
    pipeline = (
        THREE + '\nselection = "criteria"\ncriteria = ["accuracy", "tone"]\n'
        "criteria_weights = { accuracy = 2 }"
    )
    _, policy = harness.policy(config_text(stub_llm.base_url, pipeline))

    # "Short." (cand-b) is in the pipeline's hands before the others may answer.
    decision = await race.run(policy, ["cand-b"], ["cand-a", "cand-c"])

    assert decision.reply == "Short."
    sel = decision.selection
    assert sel is not None and sel.method == "criteria" and sel.fallback_from == []
    assert sel.scores == {
        0: {"accuracy": 8.0, "tone": 6.0},
        1: {"accuracy": 9.0, "tone": 4.0},
        2: {"accuracy": 5.0, "tone": 10.0},
    }
    assert [c.score for c in decision.candidates] == [22.0, 22.0, 20.0]
    assert decision.candidates[1].latency_ms < decision.candidates[0].latency_ms
    assert "tie with #0 went to the faster" in sel.reasoning
    recs = Router.selection(await settled(stub_llm))
    assert len(recs) == 3 and all(r.body["model"] == "judge" for r in recs)
    # The evaluations ran at the same time: none was answered before all three were asked
    # (had they run one after another, the first would have waited forever and failed).
    assert all(r.outcome == "completed" for r in recs)


async def test_criteria_partial_and_total_failure(stub_llm: StubOpenAI, harness: Harness) -> None:
    def criteria(rec: Recorded) -> Reply:
        text = reply_under_review(rec)
        if text == "good":
            return scores_reply({"accuracy": 7, "helpfulness": 7, "tone": 7})
        if text == "broken":
            return Reply('{"scores": {"accuracy": 11, "helpfulness": 5, "tone": 5}}')
        return Reply(status=500)

    # Only one candidate can be scored, so arrival order does not matter here.
    stub_llm.script = Router(
        {"cand-a": Reply("broken"), "cand-b": Reply("errors"), "cand-c": Reply("good")},
        criteria=criteria,
    )
    _, policy = harness.policy(config_text(stub_llm.base_url, THREE + '\nselection = "criteria"'))

    decision = await Pipeline().run(request(), policy)

    sel = decision.selection
    assert sel is not None and sel.method == "criteria" and decision.reply == "good"
    assert "#0: score for 'accuracy' is 11, outside 1..10" in sel.reasoning
    assert "#1: call failed: model server answered HTTP 500" in sel.reasoning

    # Now nothing parses: the chain falls back to first and says why.
    race = Race(stub_llm)
    stub_llm.script = Router(
        {m: race.reply(m, t) for m, t in (("cand-a", "x"), ("cand-b", "y"), ("cand-c", "z"))},
        criteria=lambda _r: Reply("Great answer, 10/10"),
    )
    decision = await race.run(policy, ["cand-c"], ["cand-a", "cand-b"])
    sel = decision.selection
    assert sel is not None and sel.method == "first" and sel.fallback_from == ["criteria"]
    assert "no candidate could be scored" in sel.reasoning
    assert decision.reply == "z"  # first = the fastest: cand-c, released first


@pytest.mark.parametrize(
    ("answers", "on_low", "reply", "method", "confidence"),
    [
        (["Paris.", "paris", "Lyon"], "unsure", "paris", "vote", 0.6667),
        (["1,000", "1000.0", "one thousand"], "unsure", "1000.0", "vote", 0.6667),
        (["Paris", "Lyon", "Nice"], "unsure", "I'm not sure", "vote", 0.3333),
        (["Paris", "Lyon", "Nice"], "fallback", "Nice", "judge", 0.3333),
    ],
)
async def test_vote_majority_confidence_and_low_confidence(
    stub_llm: StubOpenAI,
    harness: Harness,
    answers: list[str],
    on_low: str,
    reply: str,
    method: str,
    confidence: float,
) -> None:
    race = Race(stub_llm)
    stub_llm.script = Router(
        {f"cand-{k}": race.reply(f"cand-{k}", a) for k, a in zip("abc", answers, strict=True)},
        judge=choose("Nice"),
    )
    pipeline = (
        THREE + f'\nselection = "vote"\nmin_confidence = 0.6\non_low_confidence = "{on_low}"\n'
        'unsure_reply = "I\'m not sure"'
    )
    _, policy = harness.policy(config_text(stub_llm.base_url, pipeline))

    # cand-b answers first, so it is the fastest of the majority {cand-a, cand-b}.
    decision = await race.run(policy, ["cand-b"], ["cand-a", "cand-c"])

    assert decision.action is Action.REPLIED and decision.reply == reply
    sel = decision.selection
    assert sel is not None and sel.method == method and sel.confidence == confidence
    assert sum(len(v) for v in sel.votes.values()) == 3
    if method == "judge":
        assert sel.fallback_from == ["vote"] and "confidence below minimum" in sel.reasoning


async def test_first_cancels_slower_candidates(stub_llm: StubOpenAI, harness: Harness) -> None:
    # The fastest candidate is unsafe, so the first *safe* one (cand-b) wins
    # and the slow one is cancelled with its HTTP request closed.
    race = Race(stub_llm)
    stub_llm.script = Router(
        {
            "cand-a": race.reply("cand-a", LONG),
            "cand-b": race.reply("cand-b", "Paris."),
            "cand-c": race.reply("cand-c", "Paris, slowly."),  # never released
        },
    )
    _, policy = harness.policy(
        config_text(stub_llm.base_url, THREE + '\nselection = "first"', SHORT_OUTPUT_GUARD)
    )

    # cand-a's reply is screened (a local guard: no suspension) in the same step
    # the pipeline receives it, so it has failed before cand-b may answer.
    decision = await race.run(policy, ["cand-a"], ["cand-b"])

    assert decision.reply == "Paris." and decision.selection is not None
    assert decision.selection.method == "first"
    a, b, c = decision.candidates
    assert a.safe is False and b.chosen and c.error == "cancelled: another candidate passed first"
    recs = {r.body["model"]: r for r in await settled(stub_llm)}
    assert recs["cand-c"].closed_early and recs["cand-b"].outcome == "completed"
    assert len(recs) == 3  # no judge call


async def test_candidate_failing_midway_is_dropped(stub_llm: StubOpenAI, harness: Harness) -> None:
    stub_llm.script = Router(
        {
            "cand-a": Reply("a partial answer that never ends well", drop_after_chunks=1),
            "cand-b": Reply("Paris."),
            "cand-c": Reply("late", hold=asyncio.Event()),  # never answers: times out
        },
        judge=choose("Paris"),
    )
    text = config_text(stub_llm.base_url, THREE + '\nselection = "judge"', stream=True)
    _, policy = harness.policy(text.replace("timeout_s = 5", "timeout_s = 1"))

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.REPLIED and decision.reply == "Paris."
    a, b, c = decision.candidates
    assert a.error and a.safe is None and not a.chosen
    assert c.error == "model timed out after 1s"
    sel = decision.selection
    assert sel is not None and sel.method == "only_safe"  # one survivor: no judge call
    recs = {r.body.get("model"): r for r in await settled(stub_llm)}
    assert recs["cand-a"].outcome == "dropped" and recs["cand-c"].closed_early
    assert "judge" not in recs


async def test_all_candidates_failing_gives_clear_error(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    stub_llm.script = Router(
        {"cand-a": Reply(status=500), "cand-b": Reply(status=503), "cand-c": Reply("   ")}
    )
    _, policy = harness.policy(config_text(stub_llm.base_url, THREE))

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.ERROR
    assert "couldn't produce a reply" in decision.reply
    assert decision.error and "HTTP 500" in decision.error and "empty reply" in decision.error
    assert all(c.error for c in decision.candidates)


async def test_all_candidates_unsafe_blocks_without_judge(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    stub_llm.script = Router({k: Reply(LONG + k) for k in ("cand-a", "cand-b", "cand-c")})
    _, policy = harness.policy(
        config_text(stub_llm.base_url, THREE + '\nselection = "judge"', SHORT_OUTPUT_GUARD)
    )

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.BLOCKED and decision.blocked_by == "short"
    assert decision.reply == "Sorry, I can't help with that."
    for cand in decision.candidates:
        assert cand.safe is False and not cand.chosen and cand.text.startswith("This reply")
        (v,) = decision.verdicts_for(cand.index)
        assert v.blocking and v.stage is Stage.OUTPUT
    assert len(await settled(stub_llm)) == 3  # no judge call for nothing to choose


class BlockWhenStreaming:
    """An input guard that blocks once every candidate has started streaming its reply."""

    name = "stop"
    local = False
    offline = False

    def __init__(self, stub: StubOpenAI, count: int) -> None:
        self.stub, self.count = stub, count

    async def check(self, text: str, context: GuardContext) -> Verdict:
        while len(self.stub.chat_requests()) < self.count:
            self.stub.request_seen.clear()
            await self.stub.request_seen.wait()
        for rec in self.stub.chat_requests():
            await rec.first_chunk.wait()
        return verdict(self.name, context, unsafe=True, category="test", score=1.0)


async def test_input_guard_blocking_while_candidates_stream_closes_every_request(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    stub_llm.script = Router(
        {k: Reply("word " * 100, delay_s=10, chunks=100) for k in ("cand-a", "cand-b", "cand-c")},
    )
    _, policy = harness.policy(
        config_text(stub_llm.base_url, THREE + '\nselection = "judge"', stream=True)
    )
    guard_cfg = MaxLengthGuardConfig(name="stop", kind="max_length", stage="input")
    guard = ConfiguredGuard(guard_cfg, BlockWhenStreaming(stub_llm, 3))
    policy = dataclasses.replace(policy, guards=(guard,))

    decision = await Pipeline().run(request(), policy)

    assert decision.action is Action.BLOCKED and decision.blocked_by == "stop"
    recs = await settled(stub_llm)
    assert len(recs) == 3  # three candidates, no judge
    for rec in recs:
        assert rec.closed_early, rec.outcome
        assert 1 <= rec.chunks_sent < 100  # it was streaming, and it was stopped mid-reply
    for cand in decision.candidates:
        assert cand.error == "cancelled: an input guard blocked" and not cand.chosen


async def test_decision_log_keeps_candidates_scores_choice_and_why(
    stub_llm: StubOpenAI, tmp_path: Path
) -> None:
    scores = {"Paris.": 9, "Paris!": 6, "Lyon.": 2}
    stub_llm.script = Router(
        {"cand-a": Reply("Paris."), "cand-b": Reply("Paris!"), "cand-c": Reply("Lyon.")},
        criteria=lambda rec: scores_reply(
            {"accuracy": scores[reply_under_review(rec)], "helpfulness": 5, "tone": 5}
        ),
    )
    extra = SHORT_OUTPUT_GUARD + f'\n[log]\npath = "{tmp_path / "log.db"}"'
    text = config_text(stub_llm.base_url, THREE + '\nselection = "criteria"', extra)
    bot = await GuardBot.open(parse_config(text, "test"), env={"OPENAI_API_KEY": "sk-test"})
    try:
        decision = await bot.handle(request())
        stored = await bot.log.get(decision.id)
    finally:
        await bot.close()

    assert stored is not None and stored.reply == "Paris."
    assert [(c.index, c.model, c.score, c.chosen, c.safe) for c in stored.candidates] == [
        (0, "cand-a", 19.0, True, True),
        (1, "cand-b", 16.0, False, True),
        (2, "cand-c", 12.0, False, True),
    ]
    assert [v.guard for v in stored.verdicts if v.candidate_index is not None] == ["short"] * 3
    sel = stored.selection
    assert sel is not None and sel.method == "criteria"
    assert sel.scores[0] == {"accuracy": 9.0, "helpfulness": 5.0, "tone": 5.0}
    assert sel.reasoning.startswith("highest weighted total: #0 (#0=19, #1=16, #2=12)")
    assert [c.purpose for c in stored.llm_calls].count("selection") == 3
