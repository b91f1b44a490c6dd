"""Runtime overrides visible where they apply, and the replay's output conventions.

The log carries the issue's case: `/admin guard disable profanity` typed in an
earlier chat, then three insults answered normally. Every surface must say so
(start banner, `config`, `screen`, `replay`), and each can be told to ignore it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.config.schema import load_config
from bot.replay import DecisionFilter, Kind, ReplayOptions, run_replay
from bot.replay.render import describe_flip
from bot.replay.results import GuardFlip
from middleware.decision_log import DecisionLog
from middleware.errors import LLMError
from middleware.llm.scripted import FunctionModel, Scripted, ScriptedModel
from middleware.types import Action, ChatRequest
from tests.support.terminal_support import INSULT, Logged, make_log, run

OVERRIDE = "global guard.profanity.enabled = false (set by console:ann"


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Logged:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GUARDBOT_CONFIG", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    found = asyncio.run(make_log(tmp_path, override=True))
    assert [d.action for d in found.decisions][-3:] == [Action.REPLIED] * 3  # the override
    return found


def test_chat_and_run_start_with_a_banner_of_the_overrides(logged: Logged) -> None:
    async def notice() -> str | None:
        bot = await GuardBot.open(load_config(logged.config), env={})
        try:
            return bot.notice()
        finally:
            await bot.close()

    text = asyncio.run(notice())
    assert text is not None and "1 runtime override(s) from the decision log are in force" in text
    assert OVERRIDE in text


def test_config_shows_the_effective_configuration_with_overrides_marked(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--config", str(logged.config), "config")
    assert code == 0
    data = json.loads(out)
    profanity = next(g for g in data["guards"] if g["name"] == "profanity")
    assert profanity["enabled"] is False  # the effective value, not the file's
    [row] = data["runtime_overrides"]
    assert (row["scope"], row["key"], row["value"], row["file_value"]) == (
        "global", "guard.profanity.enabled", False, True,
    )  # fmt: skip
    assert OVERRIDE in err
    code, out, _ = run(capsys, "--config", str(logged.config), "config", "--no-overrides")
    data = json.loads(out)
    assert next(g for g in data["guards"] if g["name"] == "profanity")["enabled"] is True
    assert data["runtime_overrides"] == []


def test_screen_applies_the_overrides_unless_told_not_to(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--config", str(logged.config), "screen", INSULT, "--json")
    assert code == 0 and OVERRIDE in err
    [result] = json.loads(out)
    assert result["blocked"] is False  # as the bot answered it
    argv = ["--config", str(logged.config), "screen", INSULT, "--no-overrides", "--json"]
    code, out, err = run(capsys, *argv)
    assert json.loads(out)[0]["blocked_by"] == ["profanity"] and "override" not in err
    assert run(capsys, *argv, "--fail-on-block")[0] == 1
    assert run(capsys, "--config", str(logged.config), "screen", "hello", "--fail-on-block")[0] == 0


def test_replay_says_which_overrides_and_log_it_used_and_can_ignore_them(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(logged.config), "replay", "--no-progress"]
    code, out, err = run(capsys, *base)
    assert code == 0
    assert f"decision log: {logged.db}" in err
    assert "runtime overrides applied (1; --no-overrides to ignore)" in err and OVERRIDE in err
    assert "│ Newly blocked    │ 0 │" in out  # the insults pass, as they did in the chat
    code, out, err = run(capsys, *base, "--no-overrides")
    assert "runtime overrides: ignored (--no-overrides)" in err
    assert "│ Newly blocked    │ 3 │" in out
    # The three identical insults are one row of the changes table.
    rows = [line for line in out.splitlines() if INSULT in line]
    assert len(rows) == 1, out
    assert "and 2 identical" in out


def test_replay_json_is_indented_and_the_list_stays_small(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(logged.config), "replay", "--no-progress"]
    code, out, _ = run(capsys, *base, "--no-overrides", "--json")
    assert code == 0 and out.startswith('{\n  "run_id"')
    assert json.loads(out)["newly_blocked"] == 3
    code, out, _ = run(capsys, *base, "--list", "--json", "-n", "1")
    [listed] = json.loads(out)
    assert out.startswith("[\n  {") and "changes" not in listed
    assert listed["stored_changes"] == 3 and len(out) < 2000


@pytest.mark.parametrize("columns", [80, 120, 160])
def test_replay_list_is_readable_at_any_width(
    logged: Logged,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    base = ["--config", str(logged.config), "replay", "--no-progress"]
    assert run(capsys, *base, "--json")[0] == 0
    run_id = _last_run(logged)
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, _ = run(capsys, *base, "--list")
    assert code == 0
    assert all(len(line) <= columns for line in out.splitlines()), out
    assert run_id in out and "cli:" in out and "guards-only" in out and "…" not in out


def _last_run(logged: Logged) -> str:
    async def read() -> str:
        log = await DecisionLog.open(logged.db, read_only=True)
        try:
            return (await log.replay_runs(1))[0].id
        finally:
            await log.close()

    return asyncio.run(read())


def test_replay_html_report_is_owner_only(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    page = logged.folder / "report.html"
    page.write_text("old")
    os.chmod(page, 0o644)  # an existing, readable file is tightened too
    argv = ["--config", str(logged.config), "replay", "--no-progress", "--report", str(page)]
    assert run(capsys, *argv)[0] == 0
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert "<!doctype html>" in page.read_text()


def test_full_replay_counts_error_to_replied_apart_from_verdict_changes(tmp_path: Path) -> None:
    async def scenario() -> dict[str, int]:
        logged = await make_log(tmp_path)
        config = load_config(logged.config)
        failing = ScriptedModel([Scripted(error=LLMError("model server answered HTTP 500"))])
        log = await DecisionLog.open(logged.db)
        bot = GuardBot(config, log, model=failing, env={})
        try:
            request = ChatRequest(platform="console", channel_id="console", text="how are you?")
            old = await bot.handle(request)
            assert old.action is Action.ERROR
        finally:
            await bot.close()
        log = await DecisionLog.open(logged.db)
        host = GuardBot(config, log, model=FunctionModel(lambda _m, _s: "fine"), env={})
        try:
            options = ReplayOptions(selection=DecisionFilter(ids=(old.id,)), mode="full")
            report = await run_replay(host, options)
        finally:
            await host.close()
        [result] = report.tally.notable
        assert result.kind is Kind.OUTCOME_CHANGED and result.new_action == "replied"
        return report.tally.summary()

    summary = asyncio.run(scenario())
    assert summary["verdicts_changed"] == 0 and summary["outcome_changed"] == 1


def test_a_candidate_is_numbered_as_json_and_show_number_it() -> None:
    flip = GuardFlip(
        guard="pii", stage="output", candidate_index=0, old_outcome="allow", new_outcome="block",
        old_blocking=False, new_blocking=True, old_score=None, new_score=1.0, reason="email",
    )  # fmt: skip
    assert describe_flip(flip).startswith("pii (output[0]): ")  # show: "output[0]"; JSON: 0
