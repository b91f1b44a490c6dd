"""Replay of streamed replies from a real log: what each chunk says now.

The chunk that stopped a stream was never shown, so its text was never
recorded: replay keeps that chunk's verdicts from the log under today's policy
(the same policy changes nothing; a guard that now only flags lets the stream
go on) and says it cannot replay it when the guard that stopped it is gone.
The HTML report shows each row's chunks; identical rows are grouped.
"""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from bot.app import GuardBot
from bot.replay import Kind, ReplayOptions, RunReport, Tally, run_replay
from bot.replay.render import print_report
from bot.replay.report_html import render_html
from middleware.decision_log import DecisionLog
from middleware.types import Outcome
from tests.stubs.openai_server import StubOpenAI
from tests.support.replay_support import read_page
from tests.support.stream_support import AUDIT_TOML, Streamed, audit_config, stream_log

# A guard added since: blocks "banana" (the spam's second chunk).
FRUIT = """
[[guards]]
name = "fruit"
kind = "blocklist"
stage = "output"
words = ["banana"]
"""
WORDS_GUARD = """
[[guards]]
name = "words"
kind = "blocklist"
stage = "output"
words = ["forbidden"]
"""


@pytest.fixture
async def streamed(tmp_path: Path, stub_llm: StubOpenAI) -> Streamed:
    return await stream_log(tmp_path, stub_llm)


async def _replay(streamed: Streamed, policy: str) -> RunReport:
    bot = GuardBot(audit_config(streamed.db, policy), await DecisionLog.open(streamed.db), env={})
    try:
        return await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()


async def test_the_same_policy_changes_nothing_for_a_stream_stopped_at_a_chunk(
    streamed: Streamed,
) -> None:
    report = await _replay(streamed, AUDIT_TOML)
    summary = report.tally.summary()
    assert summary["unchanged"] == summary["selected"] == 6, report.tally.notable
    assert report.tally.notable == []


async def test_a_stream_stopped_by_a_guard_now_removed_is_not_replayable(
    streamed: Streamed,
) -> None:
    assert WORDS_GUARD in AUDIT_TOML
    report = await _replay(streamed, AUDIT_TOML.replace(WORDS_GUARD, ""))
    block = streamed.decisions["block"].id
    results = {r.decision_id: r for r in report.tally.notable}
    assert results[block].kind is Kind.NOT_REPLAYABLE
    error = results[block].error or ""
    assert error.startswith("words stopped the stream at a chunk") and "--full" in error
    assert set(results) == {block}  # nothing else was stopped by `words`


class _Report(HTMLParser):
    """The changed rows of the replay page: ids per row, and each row's streamed chunks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict[str, object]] = {}  # first id -> facts
        self._row: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and a.get("class") == "change":
            self._row = a["data-id"]
            self.rows[self._row] = {
                "ids": a["data-ids"].split(), "count": int(a["data-count"]), "chunks": [],
                "listed": [], "stream": "", "kind": a["data-kind"],
            }  # fmt: skip
        elif self._row is None:
            return
        elif tag == "tr" and a.get("class") == "chunk":
            chunks = self.rows[self._row]["chunks"]
            assert isinstance(chunks, list)
            chunks.append((int(a["data-index"]), a["data-shown"], int(a["data-visible"])))
        elif tag == "p" and a.get("class") == "stream-line":
            self._in = "stream"
        elif tag == "li" and self._in == "ids":
            self._in = "id"
        elif tag == "ul" and a.get("class") == "ids":
            self._in = "ids"

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._in == "stream":
            self._in = None
        if tag == "li" and self._in == "id":
            self._in = "ids"
        if tag == "ul" and self._in == "ids":
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._row is None:
            return
        if self._in == "stream":
            self.rows[self._row]["stream"] = str(self.rows[self._row]["stream"]) + data
        if self._in == "id":
            listed = self.rows[self._row]["listed"]
            assert isinstance(listed, list)
            listed.append(data)


async def test_html_report_shows_the_chunks_and_groups_identical_rows(
    streamed: Streamed,
) -> None:
    # Today's policy: "banana" is blocked too, and `words` ("forbidden") only flags.
    policy = AUDIT_TOML.replace('words = ["forbidden"]', 'words = ["forbidden"]\naction = "flag"')
    policy += FRUIT
    bot = GuardBot(audit_config(streamed.db, policy), await DecisionLog.open(streamed.db), env={})
    try:
        report = await run_replay(bot, ReplayOptions())
        short = await bot.log.short_ids([r.decision_id for r in report.tally.notable])
    finally:
        await bot.close()
    html = render_html(report, short)
    page = _Report()
    page.feed(html)
    shared = read_page(html)  # the replay tests' reader counts every id of a group
    assert all(shared.changes[d.id] == "newly_blocked" for d in streamed.spam)
    block = streamed.decisions["block"]
    row = page.rows[block.id]
    assert row["kind"] == "newly_allowed" and row["count"] == 1
    (result,) = [r for r in report.tally.notable if r.decision_id == block.id]
    (flip,) = result.flips  # the chunk that stopped it: kept from the log, now flagged
    assert (flip.guard, flip.old_outcome, flip.new_outcome) == ("words", "block", "flag")
    assert flip.reason.startswith("kept from the log: the blocked chunk's text was not recorded")
    assert result.note is not None and "replay with --full" in result.note
    s = streamed.streams[block.id]
    assert row["chunks"] == [(0, "shown", s.chunks[0].shown_chars), (1, "BLOCKED", s.shown_chars)]
    assert "RETRACTED; ended: stopped at chunk 1 by words block" in str(row["stream"])
    assert f"first visible text at {s.first_visible_ms:.0f} ms" in str(row["stream"])
    # The `final` guard still blocks its reply: unchanged, so not listed.
    assert streamed.decisions["final"].id not in page.rows
    # The three identical spam decisions: one row, the count, and every id listed.
    spam_ids = [d.id for d in streamed.spam]
    (first,) = [k for k, r in page.rows.items() if r["ids"] == spam_ids]
    spam = page.rows[first]
    assert first == spam_ids[0] and spam["count"] == 3 and spam["kind"] == "newly_blocked"
    assert spam["listed"] == spam_ids
    assert len(spam["chunks"]) == len(streamed.streams[first].chunks)  # type: ignore[arg-type]
    assert all(i not in page.rows for i in spam_ids[1:])
    # The terminal table groups the same way and says how each stream went.
    console = Console(record=True, width=200)
    print_report(console, report, short)
    text = " ".join(console.export_text().split())
    assert f"{short[spam_ids[0]]} " in text and "and 2 identical" in text
    assert "RETRACTED; ended: stopped at chunk 1 by words block" in text


async def test_replay_applies_a_final_guard_to_the_whole_streamed_reply(streamed: Streamed) -> None:
    policy = AUDIT_TOML.replace('words = ["zebra"]', 'words = ["zebra", "bye"]')
    bot = GuardBot(audit_config(streamed.db, policy), await DecisionLog.open(streamed.db), env={})
    try:
        report = await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()
    results = {r.decision_id: r for r in report.tally.notable}
    mail = results[streamed.decisions["mail"].id]  # "... Bye now." was shown in full then
    assert (mail.kind.value, mail.new_blocked_by) == ("newly_blocked", "late")
    assert mail.note == "late (stream = final) would retract the reply after it was shown"
    assert streamed.decisions["final"].id not in results  # blocked by `late` then and now


async def test_rows_group_only_when_their_chunks_read_the_same(streamed: Streamed) -> None:
    """A grouped row shows its first result's chunk table: results whose chunks were judged
    differently (here one spam reply's first chunk was flagged) are rows of their own."""
    report = await _replay(streamed, AUDIT_TOML + FRUIT)
    spam = sorted(
        (r for r in report.tally.notable if r.decision_id in {d.id for d in streamed.spam}),
        key=lambda r: r.decision_id,
    )
    assert len(spam) == 3 and len(report.tally.grouped_notable()) == 1
    stream = spam[1].stream
    assert stream is not None
    first = stream.chunks[0]
    flagged = [v.model_copy(update={"outcome": Outcome.FLAG}) for v in first.verdicts]
    chunks = [first.model_copy(update={"verdicts": flagged}), *stream.chunks[1:]]
    other = replace(spam[1], stream=stream.model_copy(update={"chunks": chunks}))
    tally = Tally(notable=[spam[0], other, spam[2]])
    assert [[r.decision_id for r in g] for g in tally.grouped_notable()] == [
        [spam[0].decision_id, spam[2].decision_id],
        [other.decision_id],
    ]
