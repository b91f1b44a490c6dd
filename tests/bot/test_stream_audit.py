"""What the log records of a streamed reply, read back where people read decisions.

A real GuardBot streams replies from the stub server (through the real
``openai`` client) into a view and records them in a real SQLite file; then
`guardbot show` (table and ``--json``, through ``main()``), the admin ``why``
and ``status`` answers and the HTML replay report (parsed) must show the
chunks: per chunk its index, output verdicts and characters shown, the time to
first visible text, chunks and updates, retracted or not, and how it ended.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from adapters.render import stream_line
from bot.app import GuardBot
from bot.cli.main import main
from bot.config.schema import parse_config
from bot.replay import ReplayOptions, run_replay
from bot.replay.render import print_report
from bot.replay.report_html import render_html
from middleware.decision_log import DecisionLog
from middleware.llm.openai_model import OpenAIChatModel
from middleware.types import Action, ChatRequest, Decision, StreamRecord
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.support.replay_support import read_page

TOML = """
[pipeline]
chunk_chars = 10
history_turns = 0

[admin]
users = ["console:*", "slack:UA"]

[slack]
stream_api = "off"

[[guards]]
name = "pii"
kind = "pii"
stage = "output"
action = "redact"

[[guards]]
name = "words"
kind = "blocklist"
stage = "output"
words = ["forbidden"]

[[guards]]
name = "late"
kind = "blocklist"
stage = "output"
words = ["zebra"]
stream = "final"
"""
# What the stub model answers to each message (pieces of one streamed reply).
PIECES = {
    "mail": ["Hello world. ", "Mail me at a.b@", "example.org please. ", "Bye now.\n"],
    "block": ["A fine start here. ", "Then a forbidden word. ", "And more.\n"],
    "final": ["Plain first part. ", "A zebra at the end.\n"],
    "spam": ["Buy cheap pills. ", "Banana deals today.\n"],
}


class View:
    """A reply view that records every visible state, and when the first one appeared."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.first_shown = asyncio.Event()

    async def show(self, text: str) -> None:
        self.states.append(text)
        self.first_shown.set()

    async def retract(self, text: str) -> None:
        self.states.append(text)


@dataclass
class Streamed:
    db: Path
    decisions: dict[str, Decision] = field(default_factory=dict)
    spam: list[Decision] = field(default_factory=list)
    streams: dict[str, StreamRecord] = field(default_factory=dict)  # decision id -> record


def _config(db: Path, toml: str = TOML):  # type: ignore[no-untyped-def]
    return parse_config(toml + f'\n[log]\npath = "{db}"\n', "test")


def _request(text: str) -> ChatRequest:
    return ChatRequest(platform="console", channel_id="console", user_id="u1", text=text)


async def _stream_log(folder: Path, stub: StubOpenAI) -> Streamed:
    """Four kinds of streamed reply, and the same spam message three times."""
    out = Streamed(folder / "g.db")
    view = View()

    def script(rec: Recorded) -> Reply:
        key = rec.body["messages"][-1]["content"].split()[0]
        # The second piece waits until the first chunk is on screen: text shown before a
        # block (mid-stream, or by the `final` guard) is what gets retracted.
        pauses = {1: view.first_shown} if key in ("block", "final") else {}
        return Reply(pieces=PIECES[key], pauses=pauses)

    stub.script = script
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub.base_url)
    bot = GuardBot(_config(out.db), await DecisionLog.open(out.db), env={}, model=model)
    try:
        for key in ("mail", "block", "final"):
            view = View()
            out.decisions[key] = await bot.handle(_request(f"{key} please"), view)
        for _ in range(3):
            out.spam.append(await bot.handle(_request("spam please"), View()))
        for d in [*out.decisions.values(), *out.spam]:
            record = await bot.log.stream_of(d.id)
            assert record is not None, d
            out.streams[d.id] = record
    finally:
        await bot.close()
        await model.close()
    return out


@pytest.fixture
async def streamed(tmp_path: Path, stub_llm: StubOpenAI) -> Streamed:
    return await _stream_log(tmp_path, stub_llm)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _show(capsys: pytest.CaptureFixture[str], streamed: Streamed, ref: str) -> tuple[int, str, str]:
    return _cli(capsys, "show", "--db", str(streamed.db), ref)


async def test_the_log_holds_what_each_stream_did(streamed: Streamed) -> None:
    """The cases the views below are checked on, as the bot recorded them."""
    mail, block, final = (streamed.decisions[k] for k in ("mail", "block", "final"))
    assert mail.action is Action.REPLIED and "[EMAIL]" in mail.reply
    s = streamed.streams[mail.id]
    assert len(s.chunks) >= 2 and not s.retracted and s.stopped_at_chunk is None
    assert block.action is Action.BLOCKED and block.blocked_by == "words"
    s = streamed.streams[block.id]
    assert s.retracted and s.stopped_at_chunk == 1 and s.shown_chars == s.chunks[0].chars > 0
    assert final.action is Action.BLOCKED and final.blocked_by == "late"
    s = streamed.streams[final.id]
    assert s.retracted and s.stopped_at_chunk is None and s.shown_chars > 0


async def test_show_prints_every_chunk_with_its_verdicts(
    streamed: Streamed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    block = streamed.decisions["block"]
    s = streamed.streams[block.id]
    code, out, err = await asyncio.to_thread(_show, capsys, streamed, block.id)
    assert code == 0, err
    flat = " ".join(out.split())  # the stream's line may wrap
    assert (
        f"streamed: {len(s.chunks)} chunk(s), {s.updates} update(s), first visible text at "
        f"{s.first_visible_ms:.0f} ms" in flat
    )
    assert (
        f"{s.shown_chars} chars shown, RETRACTED; ended: stopped at chunk 1 by words block" in flat
    )
    assert "no delivery failures" in flat and "judged once at the end: late" in flat
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert "shown" in rows["0"] and "words allow" in rows["0"] and "pii allow" in rows["0"]
    assert "BLOCKED" in rows["1"] and "words block BLOCKS" in rows["1"]
    assert "forbidden" in rows["1"]  # why it blocked: the guard's reason
    mail = streamed.decisions["mail"]
    code, out, _ = await asyncio.to_thread(_show, capsys, streamed, mail.id)
    assert "not retracted; ended: completed" in " ".join(out.split())
    assert "pii redact" in out and "a.b@" not in out  # the mask, never the address
    final = streamed.decisions["final"]
    code, out, _ = await asyncio.to_thread(_show, capsys, streamed, final.id)
    flat = " ".join(out.split())
    assert "RETRACTED; ended: retracted: late blocked the whole reply after it was shown" in flat


async def test_show_json_has_the_stream_record(
    streamed: Streamed, capsys: pytest.CaptureFixture[str]
) -> None:
    block = streamed.decisions["block"]
    s = streamed.streams[block.id]
    code, out, err = await asyncio.to_thread(
        _cli, capsys, "show", "--db", str(streamed.db), "--json", block.id
    )
    assert code == 0, err
    got = json.loads(out)["stream"]
    assert got["chunks_count"] == len(s.chunks) and got["updates"] == s.updates
    assert got["first_visible_ms"] == s.first_visible_ms and got["shown_chars"] == s.shown_chars
    assert got["retracted"] is True and got["stopped_at_chunk"] == 1
    assert got["stop_reason"].startswith("stopped at chunk 1 by words block")
    assert got["delivery_errors"] == [] and got["final_guards"] == ["late"]
    assert [c["index"] for c in got["chunks"]] == [c.index for c in s.chunks]
    assert [c["released"] for c in got["chunks"]] == [True, False]
    assert [c["shown_chars"] for c in got["chunks"]] == [c.shown_chars for c in s.chunks]
    blocking = [(v["guard"], v["outcome"]) for v in got["chunks"][1]["verdicts"] if v["blocking"]]
    assert blocking == [("words", "block")]
    # `logs --json` gives the same object per decision, and null for an unstreamed reply
    code, out, _ = await asyncio.to_thread(_cli, capsys, "logs", "--db", str(streamed.db), "--json")
    by_id = {r["id"]: r for r in json.loads(out)}
    assert by_id[block.id]["stream"] == got


async def test_admin_why_explains_the_stream(streamed: Streamed, tmp_path: Path) -> None:
    bot = GuardBot(_config(streamed.db), await DecisionLog.open(streamed.db), env={})
    try:
        request = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
        recent = await bot.admin(request, "recent 3")
        answer = await bot.admin(request, f"why {streamed.decisions['block'].id}")
    finally:
        await bot.close()
    assert "streamed: 2 chunk(s)" in answer and "RETRACTED" in answer
    assert "ended: stopped at chunk 1 by words block" in answer
    assert "Last 3 decisions" in recent


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
    # Today's policy: "banana" is blocked too, "forbidden" no longer is.
    policy = TOML.replace('words = ["forbidden"]', 'words = ["banana"]')
    bot = GuardBot(_config(streamed.db, policy), await DecisionLog.open(streamed.db), env={})
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


async def test_recent_shows_short_ids_that_why_accepts(streamed: Streamed) -> None:
    bot = GuardBot(_config(streamed.db), await DecisionLog.open(streamed.db), env={})
    request = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
    everything = [*streamed.decisions.values(), *streamed.spam]
    try:
        recent = await bot.admin(request, "recent 10")
        listed = [line.split()[0] for line in recent.splitlines()[1:]]
        short = await bot.log.short_ids([d.id for d in everything])
        assert sorted(listed) == sorted(short.values())  # made in one second: long shared prefix
        assert all(7 <= len(s) < 26 for s in listed)
        for d in everything:
            answer = await bot.admin(request, f"why {short[d.id]}")
            assert answer.startswith(f"Decision {d.id}: {d.action.value}"), answer
        # one character less than a short id may be ambiguous: then the candidates are named
        ambiguous = next(
            (
                s[:-1]
                for s in listed
                if len(s) > 7 and sum(x.startswith(s[:-1]) for x in listed) > 1
            ),
            None,
        )
        if ambiguous is not None:
            answer = await bot.admin(request, f"why {ambiguous}")
            assert "matches more than one decision" in answer
    finally:
        await bot.close()


async def test_status_says_what_best_of_does_to_streaming_and_it_does_so(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    stub_llm.script = lambda _r: Reply(pieces=["First part. ", "Second part.\n"])
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    db = tmp_path / "g.db"
    bot = GuardBot(_config(db), await DecisionLog.open(db), env={}, model=model)
    admin = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
    try:
        status = await bot.admin(admin, "status")
        assert (
            "streaming: on: chunks of 10+ chars, each shown only after the output guards" in status
        )
        one = await bot.handle(_request("hello"), view := View())
        assert len(view.states) >= 2 and await bot.log.stream_of(one.id) is not None
        for selection, said in (
            ("judge", "the reply chosen by judge is shown whole once it is chosen"),
            ("first", "the first candidate to pass its output guards is shown whole and the "
             "others are cancelled"),
        ):  # fmt: skip
            await bot.admin(admin, "set best_of 3")
            await bot.admin(admin, f"set selection {selection}")
            status = await bot.admin(admin, "status")
            assert f"streaming: on, but not with best_of 3: {said}" in status, status
            assert "nothing from a discarded candidate is ever shown" in status
            # ... and that is what happens: one visible state, the chosen reply, no stream
            decision = await bot.handle(_request("hello"), view := View())
            assert decision.action is Action.REPLIED and len(decision.candidates) == 3
            assert view.states == [decision.reply]
            assert await bot.log.stream_of(decision.id) is None
        await bot.admin(admin, "set stream false --here")
        status = await bot.admin(admin, "status")
        assert "streaming: off [this channel] (replies are shown whole once screened)" in status
        in_slack = admin.model_copy(update={"platform": "slack", "user_id": "UA"})
        await bot.admin(admin, "set best_of 1")
        assert (
            "streaming: on, but not in Slack ([slack] stream_api = off): replies are posted "
            "whole once screened" in await bot.admin(in_slack, "status")
        )
    finally:
        await bot.close()
        await model.close()


async def test_delivery_failures_are_shown_inert(streamed: Streamed) -> None:
    """No adapter fills ``delivery_errors`` through this bot yet; its rendering is the one
    every surface uses, so a platform's error text (hostile, too) reads the same there."""
    s = streamed.streams[streamed.decisions["mail"].id].model_copy(
        update={"delivery_errors": ["edit 2: HTTP 403 \x1b[2Jmissing_scope <@U1>"]}
    )
    line = stream_line(s)
    assert line.endswith(
        "; 1 delivery failure(s): edit 2: HTTP 403 \\x1b[2Jmissing_scope <@\u200bU1>"
    )
    assert "\x1b" not in line


async def test_replay_applies_a_final_guard_to_the_whole_streamed_reply(streamed: Streamed) -> None:
    policy = TOML.replace('words = ["zebra"]', 'words = ["zebra", "bye"]')
    bot = GuardBot(_config(streamed.db, policy), await DecisionLog.open(streamed.db), env={})
    try:
        report = await run_replay(bot, ReplayOptions())
    finally:
        await bot.close()
    results = {r.decision_id: r for r in report.tally.notable}
    mail = results[streamed.decisions["mail"].id]  # "... Bye now." was shown in full then
    assert (mail.kind.value, mail.new_blocked_by) == ("newly_blocked", "late")
    assert mail.note == "late (stream = final) would retract the reply after it was shown"
    assert streamed.decisions["final"].id not in results  # blocked by `late` then and now
