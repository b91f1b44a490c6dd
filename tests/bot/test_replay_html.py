"""The HTML report: numbers read back from the page (also through headless Chromium), and
hostile log text that stays text."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.app import GuardBot
from bot.replay import ReplayOptions, run_replay
from bot.replay.report_html import render_html
from middleware.decision_log import DecisionLog
from tests.support.replay_support import (
    EXPECTED,
    POLICY_A,
    POLICY_B,
    BuiltLog,
    build_log,
    config,
    handle_all,
    read_page,
)

HOSTILE = (
    '<script>document.title="pwned"</script><img src=x onerror="alert(1)"> '
    "I like apple & \"quotes\" '<b>bold</b>' \u202e}}{{ [red]markup[/red] \x1b[31m"
)
HOSTILE_USER = '"><svg onload=alert(2)>'


async def hostile_log(tmp_path: Path) -> tuple[BuiltLog, str]:
    built = await build_log(tmp_path)
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_A, built.db), log, env={})
    try:
        found = await handle_all(bot, [("hostile", "c1", HOSTILE_USER, HOSTILE)])
    finally:
        await bot.close()
    built.extra_ids["hostile"] = found["hostile"].id
    return built, found["hostile"].id


async def report_under_b(built: BuiltLog) -> str:
    log = await DecisionLog.open(built.db)
    bot = GuardBot(config(POLICY_B, built.db), log, env={})
    try:
        return render_html(await run_replay(bot, ReplayOptions()))
    finally:
        await bot.close()


async def test_hostile_text_stays_text_and_nothing_is_fetched(tmp_path: Path) -> None:
    built, hostile_id = await hostile_log(tmp_path)
    html = await report_under_b(built)
    page = read_page(html)
    assert page.changes[hostile_id] == "newly_blocked"  # it contains "apple"
    assert page.messages[hostile_id].startswith('<script>document.title="pwned"</script><img')
    assert "script" not in page.tags and "img" not in page.tags
    assert "onload" not in html.replace("&quot;&gt;&lt;svg onload", "")
    assert page.fetching_attrs == []  # no external assets: no src, no href
    # bidi overrides and terminal escapes are shown, not obeyed
    assert "\u202e" not in html and "\x1b" not in html
    assert "\\u202e" in page.messages[hostile_id] and "\\u001b[31m" in page.messages[hostile_id]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<svg" in html and 'id="chart-svg"' in html


def _chromium() -> str | None:
    return next(
        (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))),
        None,
    )


async def test_chromium_renders_the_report_and_its_numbers_read_back(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    built, hostile_id = await hostile_log(tmp_path)
    report = tmp_path / "replay.html"
    report.write_text(await report_under_b(built), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
        report.resolve().as_uri(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(90):
            dom, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    page = read_page(dom.decode())
    assert page.summary == {
        "selected": 9,
        "replayed": 9,
        "unchanged": 4,
        "newly_blocked": 3,
        "newly_allowed": 1,
        "verdicts_changed": 1,
        "outcome_changed": 0,
        "errors": 0,
        "not_replayable": 0,
    }
    expected = {built.ids[k]: v[0] for k, v in EXPECTED.items()} | {hostile_id: "newly_blocked"}
    assert page.changes == expected
    assert page.chart == {"words": 3, "swearing": 1, "legacy": 2}
    # The hostile message was rendered as text by the browser, not run or loaded.
    assert "script" not in page.tags and "img" not in page.tags
    assert page.messages[hostile_id].startswith('<script>document.title="pwned"')
