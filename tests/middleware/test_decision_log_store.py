"""Recording, reading back, querying, history, budgets, settings and replay runs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.types import Action, Outcome, Selection, Stage, Turn, Verdict
from tests.support.decision_log_support import make_decision, raw_db


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[DecisionLog]:
    opened = await DecisionLog.open(tmp_path / "g.db")
    yield opened
    await opened.close()


async def test_a_decision_reads_back_in_full(log: DecisionLog) -> None:
    d = make_decision()
    d.verdicts.append(
        Verdict(
            guard="ensemble",
            stage=Stage.INPUT,
            outcome=Outcome.FLAG,
            confidence=2 / 3,
            score=math.nan,
            reason="2 of 3",
            members=[
                Verdict(guard="m1", stage=Stage.INPUT, outcome=Outcome.BLOCK, raw="unsafe\nS1"),
                Verdict(guard="m2", stage=Stage.INPUT, outcome=Outcome.ALLOW, raw="safe"),
            ],
        )  # fmt: skip
    )
    d.selection = Selection(
        method="vote", reasoning="2 of 3 agree", confidence=0.67, labels={"A": 0},
        scores={0: {"accuracy": 8.0}}, votes={"paris": [0, 1]},
    )  # fmt: skip
    await log.record(d)
    await log.record_delivery(d.id, "failed", "HTTP 500 from slack")
    await log.record_delivery(d.id, "sent", None)
    back = await log.get(d.id)
    assert back is not None
    expected = d.model_copy(deep=True)
    expected.verdicts[-1].score = None  # NaN is not a number SQLite keeps
    expected.delivery.status = "sent"
    for v in expected.verdicts:
        v.redacted_text = None
    assert back.model_dump(exclude={"request"}) == expected.model_dump(exclude={"request"})
    assert back.request.model_dump(exclude={"history"}) == d.request.model_dump(exclude={"history"})
    stored = await log.get_stored(d.id[:20])
    assert stored is not None and stored.decision.id == d.id
    assert [e.status for e in stored.deliveries] == ["failed", "sent"]
    assert stored.text_stored and stored.text_chars == len(d.request.text)
    assert await log.get("nope") is None


async def test_query_filters_newest_first(log: DecisionLog) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    a = make_decision("weather in paris", user_id="U1", channel_id="C1", created=old)
    b = make_decision("bomb recipe", action=Action.BLOCKED, user_id="U2", channel_id="C2")
    c = make_decision("ordinary chat", user_id="U1", channel_id="C2", reply="about the weather")
    c.verdicts[0].outcome = Outcome.ERROR
    for d in (a, b, c):
        await log.record(d)

    async def ids(**filters: object) -> list[str]:
        return [d.id for d in await log.query(**filters)]  # type: ignore[arg-type]

    assert await ids() == [c.id, b.id, a.id]
    assert await ids(limit=1) == [c.id]
    assert await ids(blocked=True) == [b.id]
    assert await ids(blocked=False) == [c.id, a.id]
    assert await ids(action="replied") == [c.id, a.id]
    assert await ids(user_id="U1") == [c.id, a.id]
    assert await ids(channel_id="C2") == [c.id, b.id]
    assert await ids(guard="judge") == [c.id, b.id]  # fired: blocked, or errored
    assert await ids(guard="pii") == []  # only ever allowed
    since = datetime.now(UTC) - timedelta(days=1)
    assert await ids(since=since) == [c.id, b.id]
    assert await ids(until=since) == [a.id]
    assert await ids(text="weather") == [c.id, a.id]  # message or reply
    assert await ids(text="weath*") == [c.id, a.id]
    assert await ids(text='bomb "recipe') == [b.id]  # quotes cannot break the query
    assert await ids(text="AND OR NOT (") == []
    with pytest.raises(ValueError, match="action"):
        await log.query(action="exploded")
    with pytest.raises(ValueError, match="empty"):
        await log.query(text="   ")


async def test_history_is_the_thread_oldest_first_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    log = await DecisionLog.open(path)
    for i in range(4):
        await log.record(make_decision(f"q{i}", reply=f"a{i}", thread_id="T1"))
    await log.record(make_decision("bad", action=Action.BLOCKED, thread_id="T1"))
    await log.record(make_decision("elsewhere", thread_id="T2"))
    await log.close()
    log = await DecisionLog.open(path)  # a restart: memory comes from the file
    try:
        turns = await log.history("slack", "C1", "T1", max_turns=4, max_chars=1000)
        assert turns == [
            Turn(role="user", content="q2"), Turn(role="assistant", content="a2"),
            Turn(role="user", content="q3"), Turn(role="assistant", content="a3"),
        ]  # fmt: skip
        odd = await log.history("slack", "C1", "T1", max_turns=3, max_chars=1000)
        assert [t.content for t in odd] == ["q3", "a3"]  # never opens on a reply
        tight = await log.history("slack", "C1", "T1", max_turns=10, max_chars=5)
        assert [t.content for t in tight] == ["q3", "a3"]  # oldest dropped first
        assert await log.history("slack", "C1", "T1", max_turns=0, max_chars=100) == []
        assert await log.history("discord", "C1", "T1", max_turns=4, max_chars=100) == []
        third = (await log.query(text="q2"))[0]
        before = await log.history(
            "slack", "C1", "T1", max_turns=10, max_chars=999, before=third.id
        )
        assert [t.content for t in before] == ["q0", "a0", "q1", "a1"]
    finally:
        await log.close()


async def test_tokens_used_since(log: DecisionLog) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1, hours=1)
    await log.record(
        make_decision(user_id="U1", channel_id="C1", tokens=(100, 50), created=yesterday)
    )
    await log.record(make_decision(user_id="U1", channel_id="C1", tokens=(10, 5)))
    await log.record(make_decision(user_id="U2", channel_id="C1", tokens=(1, 2)))
    today = datetime.now(UTC) - timedelta(hours=20)
    assert await log.tokens_used_since(today, user_id="U1") == 15
    assert await log.tokens_used_since(today, channel_id="C1") == 18
    assert await log.tokens_used_since(today) == 18
    assert await log.tokens_used_since(yesterday - timedelta(seconds=1), user_id="U1") == 165


async def test_concurrent_records_share_commits_from_one_writer(log: DecisionLog) -> None:
    decisions = [make_decision(f"m{i}") for i in range(300)]
    await asyncio.gather(*(log.record(d) for d in decisions))
    stats = log.writer_stats
    assert stats.decisions == 300 and stats.failed_batches == 0
    assert stats.batches < 300 / 5  # grouped, not one transaction each
    assert len(await log.query(limit=1000)) == 300
    assert (await log.verify()).ok


async def test_a_cancelled_caller_does_not_disturb_the_writer(log: DecisionLog) -> None:
    first = asyncio.create_task(log.record(make_decision("cancelled")))
    await asyncio.sleep(0)  # queued with the writer
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await log.record(make_decision("after"))
    texts = {d.request.text for d in await log.query()}
    assert "after" in texts  # the one cancelled may or may not be written; never half
    assert (await log.verify()).ok


async def test_hostile_text_is_stored_and_verifies(log: DecisionLog) -> None:
    nasty = "\ud800 lone surrogate, NUL \x00, bidi \u202e, emoji 🙂, " + "x" * 200_000
    await log.record(d := make_decision(nasty, reply="\x1b[31mred\x1b[0m"))
    back = await log.get(d.id)
    assert back is not None
    # NUL is replaced like a lone surrogate: PostgreSQL's text cannot hold it.
    assert back.request.text.startswith("\ufffd lone surrogate, NUL \ufffd")
    assert len(back.request.text) == len(nasty)
    assert back.reply == "\x1b[31mred\x1b[0m"
    assert (await log.verify()).ok


async def test_settings_changes_are_audited_in_the_same_transaction(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    audit = {"actor": "slack:U1", "platform": "slack", "channel_id": "C1"}
    assert await log.set_setting("global", "best_of", 3, command="set best_of 3", **audit) is None
    old = await log.set_setting("global", "best_of", 5, command="set best_of 5", **audit)
    assert old == 3
    await log.set_setting("channel:slack:C1", "guards.pii.enabled", False, command="x", **audit)
    rows = await log.settings()
    assert [(r.scope, r.key, r.value, r.actor) for r in rows] == [
        ("channel:slack:C1", "guards.pii.enabled", False, "slack:U1"),
        ("global", "best_of", 5, "slack:U1"),
    ]
    assert await log.set_setting("global", "best_of", None, command="reset", **audit) == 5
    await log.record_admin_action(
        actor="slack:U9", platform="slack", channel_id="C1", command="set best_of 8",
        key="best_of", scope="global", new=8, allowed=False, error="not an admin",
    )  # fmt: skip
    actions = await log.admin_actions(limit=10)
    assert [(a.key, a.old, a.new, a.allowed) for a in actions] == [
        ("best_of", None, 8, False),
        ("best_of", 5, None, True),
        ("guards.pii.enabled", None, False, True),
        ("best_of", 3, 5, True),
        ("best_of", None, 3, True),
    ]
    assert actions[0].error == "not an admin" and actions[-1].command == "set best_of 3"
    with pytest.raises(ValueError, match="scope"):
        await log.set_setting("channel:C1", "k", 1, command="x", **audit)
    with pytest.raises(ValueError, match="JSON"):
        await log.set_setting("global", "k", math.inf, command="x", **audit)
    assert len(await log.admin_actions()) == 5  # refused values wrote nothing
    await log.close()
    with raw_db(tmp_path / "g.db") as db, pytest.raises(Exception, match="append-only"):
        db.execute("UPDATE admin_actions SET allowed = 1")


async def test_replay_runs_are_recorded(log: DecisionLog) -> None:
    run_id = await log.record_replay_run(
        actor="cli:ops", config_fingerprint="f00d", decisions_count=12, changed_count=2,
        duration_ms=85.5, filters={"since": "7d"}, summary={"blocked_now": 1},
        changes=[{"decision_id": "x", "old": "replied", "new": "blocked"}],
    )  # fmt: skip
    (run,) = await log.replay_runs()
    assert run.id == run_id and run.actor == "cli:ops" and run.config_fingerprint == "f00d"
    assert (run.decisions_count, run.changed_count, run.duration_ms) == (12, 2, 85.5)
    assert run.filters == {"since": "7d"} and run.summary == {"blocked_now": 1}
    assert run.changes[0]["new"] == "blocked"


async def test_delivery_status_is_checked(log: DecisionLog) -> None:
    await log.record(d := make_decision())
    with pytest.raises(ValueError, match="status"):
        await log.record_delivery(d.id, "maybe", None)


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    log = await DecisionLog.open(tmp_path / "g.db")
    await log.close()
    with pytest.raises(LogUnavailable, match="closed"):
        await log.record(make_decision())


async def test_a_negative_zero_score_is_stored_so_that_it_verifies(log: DecisionLog) -> None:
    # round(-1e-9, 4) is -0.0: a moderation server's tiny negative score. SQLite's REAL
    # reads it back as 0.0, so it must be hashed as 0.0 too, or verify cries tamper.
    decision = make_decision()
    decision.verdicts[0].score = round(-1e-9, 4)
    decision.timings.total_ms = -0.0
    assert math.copysign(1.0, decision.verdicts[0].score) == -1.0
    await log.record(decision)
    report = await log.verify()
    assert report.ok, report
    stored = await log.get(decision.id)
    assert stored is not None and stored.verdicts[0].score == 0.0
