"""Replay through its API: a real log from the real bot, a changed policy, exact changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.admin.decisions import replay_summary
from bot.app import GuardBot
from bot.replay import DecisionFilter, Kind, ReplayOptions, RunReport, run_replay
from middleware.decision_log import DecisionLog
from middleware.llm.scripted import FunctionModel
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.replay_support import (
    EXPECTED,
    MIDPOINT,
    POLICY_A,
    POLICY_B,
    UNCHANGED,
    BuiltLog,
    add_unstored,
    build_log,
    config,
    handle_all,
)


@pytest.fixture
async def built(tmp_path: Path) -> BuiltLog:
    return await build_log(tmp_path)


@pytest.fixture
async def bot_b(built: BuiltLog) -> AsyncIterator[GuardBot]:
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_B, built.db), log, env={})
    yield bot
    await bot.close()


def by_key(built: BuiltLog, report: RunReport) -> dict[str, tuple[str, str | None, object]]:
    return {
        built.key_of(r.decision_id): (
            r.kind.value,
            r.new_action,
            {(f.guard, f.stage): (f.old_outcome, f.new_outcome) for f in r.flips},
        )
        for r in report.tally.notable
    }


async def count_decisions(db: Path) -> int:
    log = await DecisionLog.open(db, read_only=True)
    try:
        return len(await log.query(limit=10_000))
    finally:
        await log.close()


async def test_policy_change_reports_exactly_the_changed_decisions_and_why(
    built: BuiltLog, bot_b: GuardBot
) -> None:
    report = await run_replay(bot_b, ReplayOptions(concurrency=3))
    assert by_key(built, report) == EXPECTED
    assert report.tally.summary() == {
        "selected": 8,
        "replayed": 8,
        "unchanged": len(UNCHANGED),
        "newly_blocked": 2,
        "newly_allowed": 1,
        "verdicts_changed": 1,
        "outcome_changed": 0,
        "errors": 0,
        "not_replayable": 0,
    }
    assert report.tally.flips_by_guard == {
        "words": {"to_block": 2, "to_allow": 0, "other": 0},
        "swearing": {"to_block": 1, "to_allow": 0, "other": 0},
        "legacy": {"to_block": 0, "to_allow": 2, "other": 0},
    }
    awful = next(r for r in report.tally.notable if r.decision_id == built.ids["awful"])
    (flip,) = awful.flips
    # a threshold change: same score, different outcome, both shown
    assert flip.old_score == pytest.approx(flip.new_score)
    assert flip.new_score is not None and 0.6 <= flip.new_score < 0.9
    assert awful.new_blocked_by == "swearing"
    assert report.config_fingerprint == config(POLICY_B, built.db).fingerprint()


async def test_same_policy_changes_nothing_and_output_guards_rerun(built: BuiltLog) -> None:
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_A, built.db), log, env={})
    try:
        report = await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()
    assert report.tally.summary()["unchanged"] == 8
    assert report.tally.notable == []


async def test_output_guard_change_is_seen_on_the_recorded_reply(built: BuiltLog) -> None:
    # pii moved from output to input: the email message is now blocked on input, not output.
    moved = POLICY_A.replace('stage = "output"', 'stage = "input"')
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(moved, built.db), log, env={})
    try:
        report = await run_replay(
            bot, ReplayOptions(selection=DecisionFilter(ids=(built.ids["email"],)))
        )
    finally:
        await bot.close()
    (result,) = report.tally.notable
    assert result.kind is Kind.VERDICTS_CHANGED
    assert {
        (f.guard, f.stage, f.candidate_index, f.old_outcome, f.new_outcome) for f in result.flips
    } == {
        ("pii", "input", None, "not run", "block"),
        ("pii", "output", 0, "block", "not run"),
    }


async def test_replay_writes_only_its_run_record(built: BuiltLog, bot_b: GuardBot) -> None:
    before = await count_decisions(built.db)
    report = await run_replay(bot_b, ReplayOptions(actor="cli:auditor"))
    assert await count_decisions(built.db) == before
    (run,) = await bot_b.log.replay_runs(10)
    assert run.id == report.run_id
    assert run.actor == "cli:auditor"
    assert run.config_fingerprint == report.config_fingerprint
    assert (run.decisions_count, run.changed_count) == (8, 4)
    assert run.summary["newly_blocked"] == 2 and run.summary["mode"] == "guards-only"
    assert {c["id"] for c in run.changes} == {built.ids[k] for k in EXPECTED}


async def test_unstored_text_is_reported_not_replayable(built: BuiltLog) -> None:
    unstored = await add_unstored(built)
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_B, built.db), log, env={})
    try:
        report = await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()
    summary = report.tally.summary()
    assert summary["selected"] == 9 and summary["not_replayable"] == 1
    assert summary["replayed"] == 8
    (skipped,) = [r for r in report.tally.notable if r.kind is Kind.NOT_REPLAYABLE]
    assert skipped.decision_id == unstored
    assert "store_text" in (skipped.error or "")
    assert report.to_json()["not_replayable_ids"] == [unstored]


def selection_named(name: str, built: BuiltLog) -> DecisionFilter:
    return {
        "channel c1": DecisionFilter(channel_id="c1"),
        "user bob": DecisionFilter(user_id="bob"),
        "action blocked": DecisionFilter(action="blocked"),
        "ids": DecisionFilter(ids=(built.ids["apple"], built.ids["hello"])),
        "until midpoint": DecisionFilter(until=built.midpoint),
        "since midpoint": DecisionFilter(since=built.midpoint),
        "limit 3": DecisionFilter(limit=3),
    }[name]


@pytest.mark.parametrize(
    ("name", "keys", "selected"),
    [
        ("channel c1", {"apple", "awful"}, 4),
        ("user bob", {"apple", "both"}, 4),
        ("action blocked", {"banana", "both"}, 4),
        ("ids", {"apple"}, 2),
        ("until midpoint", {"apple", "banana", "both"}, MIDPOINT),
        ("since midpoint", {"awful"}, 8 - MIDPOINT),
        ("limit 3", set(), 3),  # the newest three: silly, email, forbidden
    ],
)
async def test_filters_select_the_right_decisions(
    built: BuiltLog, bot_b: GuardBot, name: str, keys: set[str], selected: int
) -> None:
    report = await run_replay(bot_b, ReplayOptions(selection=selection_named(name, built)))
    assert {built.key_of(r.decision_id) for r in report.tally.notable} == keys
    assert report.tally.selected == selected
    assert report.limited == (name == "limit 3")


async def test_runtime_settings_are_part_of_the_replayed_policy(built: BuiltLog) -> None:
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_A, built.db), log, env={})
    try:
        await log.set_setting(
            "global",
            "guard.swearing.threshold",
            0.6,
            actor="console:admin",
            platform="console",
            channel_id="c1",
            command="set guard.swearing.threshold 0.6",
        )
        report = await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()
    assert {built.key_of(r.decision_id): r.kind.value for r in report.tally.notable} == {
        "awful": "newly_blocked"
    }


async def test_full_mode_regenerates_and_screens_the_new_reply(built: BuiltLog) -> None:
    # Today's model leaks an address for one message; the output pii guard blocks it.
    def reply(messages, settings):  # type: ignore[no-untyped-def]
        last = messages[-1].content
        return "mail bob@example.org" if "silly" in last else f"(new) {last}"

    log = await DecisionLog.open(built.db)
    model = FunctionModel(reply, name="today")
    bot = GuardBot(config(POLICY_A, built.db), log, env={}, model=model)
    try:
        report = await run_replay(
            bot,
            ReplayOptions(
                mode="full", selection=DecisionFilter(ids=(built.ids["silly"], built.ids["hello"]))
            ),
        )
    finally:
        await bot.close()
    assert model.calls == 2
    assert by_key(built, report) == {
        "silly": ("newly_blocked", "blocked", {("pii", "output"): ("allow", "block")})
    }


async def test_max_input_chars_is_part_of_the_policy(built: BuiltLog) -> None:
    # max_input_chars below the recorded length: blocked by the pipeline's own check.
    tight = POLICY_A.replace("[[guards]]", "[pipeline]\nmax_input_chars = 12\n\n[[guards]]", 1)
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(tight, built.db), log, env={})
    try:
        report = await run_replay(
            bot, ReplayOptions(selection=DecisionFilter(ids=(built.ids["silly"],)))
        )
    finally:
        await bot.close()
    (result,) = report.tally.notable
    assert result.kind is Kind.NEWLY_BLOCKED
    assert result.new_blocked_by == "max_input_chars"


async def test_chat_summary_for_admins(built: BuiltLog, bot_b: GuardBot) -> None:
    text = await replay_summary(bot_b, "1h", actor="console:admin")
    assert "8 decision(s)" in text
    assert "newly blocked 2 · newly allowed 1 · verdicts changed 1" in text
    apple = (await bot_b.log.short_ids([built.ids["apple"]]))[built.ids["apple"]]
    assert f"- {apple} newly blocked" in text  # the short id, as `recent` and `logs` show it
    assert "words (input): allow 0.00 → block 1.00" in text
    (run,) = await bot_b.log.replay_runs(5)
    assert run.actor == "console:admin"
    with pytest.raises(ValueError, match="cannot read the time"):
        await replay_summary(bot_b, "last tuesday")


async def test_a_guard_that_fails_on_replay_is_an_error(
    built: BuiltLog, stub_llm: StubOpenAI
) -> None:
    stub_llm.script = lambda _req: Reply(text="I think it is fine")  # not a JSON verdict
    judged = POLICY_A + (
        f'\n[[guards]]\nname = "judge"\nkind = "llm_judge"\nbase_url = "{stub_llm.base_url}"\n'
        'on_error = "allow"\n'
    )
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(judged, built.db), log, env={"OPENAI_API_KEY": "sk-test"})
    try:
        report = await run_replay(
            bot, ReplayOptions(selection=DecisionFilter(ids=(built.ids["hello"],)))
        )
    finally:
        await bot.close()
    (result,) = report.tally.notable
    assert result.kind is Kind.ERROR
    assert result.new_action == "replied"  # on_error = allow
    assert result.error is not None and result.error.startswith("judge: unparseable verdict")
    assert report.tally.summary()["errors"] == 1


async def test_a_policy_that_cannot_be_built_fails_once_and_clearly(
    bot_b: GuardBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise ValueError("guard 'mod': no moderation client")

    monkeypatch.setattr(bot_b.policies, "policy", broken)
    text = await replay_summary(bot_b, "1h")
    assert (
        text
        == "Replay failed: cannot build the policy: ValueError: guard 'mod': no moderation client"
    )
    assert await bot_b.log.replay_runs(5) == []  # nothing ran, so no run is recorded


async def test_findings_masked_in_the_log_are_kept_under_todays_policy(tmp_path: Path) -> None:
    # The log always stores secrets masked, so the secrets guard cannot see them again;
    # replay keeps the recorded finding and applies today's action for the guard to it.
    with_keys = POLICY_A + '\n[[guards]]\nname = "keys"\nkind = "secrets"\n'
    db = tmp_path / "keys.db"
    log = await DecisionLog.open(db)
    bot = GuardBot(config(with_keys, db), log, env={})
    try:
        secret = "my key is sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zB9"
        found = await handle_all(bot, [("key", "c1", "alice", secret), ("hi", "c1", "bob", "hi")])
    finally:
        await bot.close()
    assert found["key"].blocked_by == "keys"

    async def replay_under(policy: str) -> RunReport:
        log = await DecisionLog.open(db)
        bot = GuardBot(config(policy, db), log, env={})
        try:
            stored = await log.get(found["key"].id)
            assert stored is not None and "[SECRET:" in stored.request.text
            return await run_replay(bot, ReplayOptions())
        finally:
            await bot.close()

    assert (await replay_under(with_keys)).tally.notable == []
    flagged = await replay_under(
        with_keys.replace('kind = "secrets"', 'kind = "secrets"\naction = "flag"')
    )
    (result,) = flagged.tally.notable
    assert (result.decision_id, result.kind) == (found["key"].id, Kind.NEWLY_ALLOWED)
    (flip,) = result.flips
    assert (flip.guard, flip.old_outcome, flip.new_outcome) == ("keys", "block", "flag")
    assert flip.reason.startswith("kept from the log (the stored text is masked)")
