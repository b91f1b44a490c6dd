"""`guardbot replay` from the command line: table, JSON, HTML, CI exit codes, runs, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.replay.report_html import LABELS
from middleware.decision_log import DecisionLog
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.replay_support import (
    EXPECTED,
    UNCHANGED,
    BuiltLog,
    add_unstored,
    build_log,
    read_page,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuiltLog:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables at a width that does not wrap ids
    monkeypatch.delenv("GUARDBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return asyncio.run(build_log(tmp_path))


def replay(built: BuiltLog, *args: str) -> int:
    return main(["--config", str(built.policy_a), "replay", "--no-progress", *args])


def rows(table_output: str) -> list[str]:
    """The changed-decision rows of the rich table (show_lines puts a rule between rows)."""
    body = table_output.split("Changed decisions", 1)[1]
    return [chunk for chunk in re.split(r"\n[├┡└].*", body) if "│" in chunk]


def test_table_names_each_changed_decision_and_why(
    built: BuiltLog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(built, "--policy", str(built.policy_b)) == 0
    out = capsys.readouterr().out
    summary = out.split("Changed decisions", 1)[0]
    for key, n in {"Unchanged": 4, "Newly blocked": 2, "Newly allowed": 1}.items():
        assert f"│ {key}" in summary and f"│ {n} │" in summary.split(f"│ {key}", 1)[1][:40]
    found = {}
    for row in rows(out):
        shown = re.findall(r"\b[0-9a-f]{7,26}\b", row)  # short unique ids, as git shows them
        ids = [k for k, i in built.ids.items() if any(i.startswith(t) for t in shown)]
        assert len(ids) == 1, row
        found[ids[0]] = row
    assert set(found) == set(EXPECTED)
    assert (
        "Newly blocked" in found["apple"]
        and "words (input): allow 0.00 → block 1.00" in found["apple"]
    )
    assert "matched word 'apple'" in found["apple"]
    assert "swearing (input): allow 0.68 → block 0.68" in found["awful"]
    assert (
        "Newly allowed" in found["banana"]
        and "legacy (input): block 1.00 → not run" in found["banana"]
    )
    assert "Verdicts changed" in found["both"]
    assert not UNCHANGED & set(found)


def test_json_form(built: BuiltLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(built, "--policy", str(built.policy_b), "--json", "--concurrency", "2") == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("unchanged", "newly_blocked", "newly_allowed")} == {
        "unchanged": 4,
        "newly_blocked": 2,
        "newly_allowed": 1,
    }
    assert (data["verdicts_changed"], data["errors"], data["not_replayable"]) == (1, 0, 0)
    assert data["mode"] == "guards-only" and data["config_source"] == str(built.policy_b)
    changes = {built.key_of(c["id"]): c for c in data["changes"]}
    assert {
        k: (
            c["kind"],
            c["new_action"],
            {(f["guard"], f["stage"]): (f["old_outcome"], f["new_outcome"]) for f in c["flips"]},
        )
        for k, c in changes.items()
    } == EXPECTED
    (flip,) = changes["awful"]["flips"]
    assert flip["old_score"] == flip["new_score"] and flip["direction"] == "to_block"


def test_html_form(built: BuiltLog, capsys: pytest.CaptureFixture[str]) -> None:
    page = built.db.parent / "replay.html"
    assert replay(built, "--policy", str(built.policy_b), "--report", str(page), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    found = read_page(page.read_text(encoding="utf-8"))
    assert found.summary == {k: data[k] for k in LABELS}
    assert {built.key_of(i): kind for i, kind in found.changes.items()} == {
        k: v[0] for k, v in EXPECTED.items()
    }
    assert {built.key_of(i): flips for i, flips in found.flips.items()} == {
        k: {g: outcomes for (g, _), outcomes in v[2].items()} for k, v in EXPECTED.items()
    }
    assert found.chart == {"words": 2, "swearing": 1, "legacy": 2}


def test_fail_on_change_gates_ci(built: BuiltLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(built, "--fail-on-change") == 0  # the deployed policy: nothing changes
    assert replay(built, "--policy", str(built.policy_b), "--fail-on-change") == 1
    assert (
        replay(
            built, "--policy", str(built.policy_b), "--ids", built.ids["hello"], "--fail-on-change"
        )
        == 0
    )
    capsys.readouterr()


def test_unstored_decisions_are_listed_as_not_replayable(
    built: BuiltLog, capsys: pytest.CaptureFixture[str]
) -> None:
    unstored = asyncio.run(add_unstored(built))
    assert replay(built, "--json") == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["not_replayable"] == 1 and data["not_replayable_ids"] == [unstored]
    assert "could not be replayed" in captured.err


def test_list_shows_past_runs(built: BuiltLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(built, "--policy", str(built.policy_b), "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert replay(built, "--action", "blocked", "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert replay(built, "--list", "--json") == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in runs] == [second["run_id"], first["run_id"]]  # newest first
    assert runs[1]["changed_count"] == 4 and runs[1]["decisions_count"] == 8
    assert runs[1]["config_fingerprint"] == first["config_fingerprint"]
    assert runs[1]["actor"].startswith("cli:")
    assert runs[0]["filters"]["action"] == "blocked"
    assert runs[1]["stored_changes"] == 4  # counted, not copied: the list stays small
    assert replay(built, "--list") == 0
    table = capsys.readouterr().out
    assert first["run_id"] in table and second["run_id"] in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "cannot read the time"),
        (["--ids", "zzzz"], "no decision with id 'zzzz'"),
        (["--db", "missing.db"], "missing.db (use --db"),
        (["--config", "nope.toml"], "nope.toml: no such config file"),
        (["--policy", "nope.toml"], "nope.toml: no such config file"),
    ],
)
def test_bad_input_is_one_clear_line(
    built: BuiltLog, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    # One scheme with logs/show: 1 when something is not found, 2 for usage and config.
    not_found = args[0] in ("--ids", "--db")
    assert replay(built, *args) == (1 if not_found else 2)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_replay_code_never_imports_an_adapter() -> None:
    sources = [ROOT / "bot" / "cli" / "replay.py", *(ROOT / "bot" / "replay").glob("*.py")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        # The shared renderer (adapters.render) is text only; no platform may be reachable.
        for platform in ("adapters.slack", "adapters.discord", "adapters.console", "adapters.base"):
            assert platform not in text, (path, platform)


async def test_ctrl_c_stops_cleanly_and_reports_what_was_done(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    built = await build_log(tmp_path)
    answered = 3
    never = asyncio.Event()  # held requests are answered only when the client hangs up

    def judge(rec: Recorded) -> Reply:
        if len(stub_llm.chat_requests()) <= answered:
            return Reply(text='{"unsafe": false, "category": "none", "score": 0.1, "reason": "ok"}')
        return Reply(text="{}", hold=never)

    stub_llm.script = judge
    # Policy A without the profanity model (spares the subprocess loading it), plus a judge
    # whose answers the test holds back: replay is mid-flight when Ctrl-C arrives.
    policy_a = built.policy_a.read_text(encoding="utf-8")
    assert 'name = "swearing"' in policy_a
    slow = re.sub(r'\[\[guards\]\]\nname = "swearing"\n[^\[]*', "", policy_a) + (
        f'\n[[guards]]\nname = "judge"\nkind = "llm_judge"\nbase_url = "{stub_llm.base_url}"\n'
        "timeout_s = 120\n"
    )
    policy = tmp_path / "slow.toml"
    policy.write_text(slow, encoding="utf-8")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "COLUMNS": "200"}
    env.pop("GUARDBOT_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli.main", "--config", str(built.policy_a), "replay",
        "--config", str(policy), "--concurrency", "2", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while len(stub_llm.chat_requests()) < answered + 2:  # two held in flight
                stub_llm.request_seen.clear()
                await stub_llm.request_seen.wait()
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err.decode()
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["selected"] == 8 and data["unchanged"] == answered
    assert "interrupted: 3 of 8 decisions replayed" in err.decode()
    held = stub_llm.chat_requests()[answered:]
    async with asyncio.timeout(10):
        for rec in held:
            await rec.done.wait()
    assert all(rec.closed_early for rec in held)  # in-flight guard calls were cancelled
    log = await DecisionLog.open(built.db, read_only=True)
    try:
        (run,) = await log.replay_runs(5)
    finally:
        await log.close()
    assert run.id == data["run_id"] and run.summary["interrupted"] is True
    assert run.decisions_count == answered


def test_progress_bar_counts_changed_decisions_as_it_goes() -> None:
    import io
    from datetime import UTC, datetime

    from rich.console import Console

    from bot.cli.replay import _progress
    from bot.replay.results import Kind, ReplayResult, Tally

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    tally = Tally(selected=3)
    with _progress(console, 3, True) as on_result:
        for i, kind in enumerate((Kind.UNCHANGED, Kind.NEWLY_BLOCKED, Kind.ERROR)):
            result = ReplayResult(
                decision_id=f"d{i}",
                created_utc=datetime.now(UTC),
                platform="console",
                channel_id="c",
                user_id="u",
                kind=kind,
                old_action="replied",
                new_action="blocked",
            )
            tally.add(result)
            on_result(result, tally)
    shown = screen.getvalue()  # every refresh, including the last before it was cleared
    assert "replaying" in shown and "3/3" in shown
    assert "1 changed · 1 errors" in shown
