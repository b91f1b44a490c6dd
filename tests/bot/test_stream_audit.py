"""What the log records of a streamed reply, read back where people read decisions.

A real GuardBot streams replies from the stub server (through the real
``openai`` client) into a view and records them in a real SQLite file; then
`guardbot show` (table and ``--json``, through ``main()``), the admin ``why``
and ``status`` answers (the HTML replay report: test_stream_replay.py) must show the
chunks: per chunk its index, output verdicts and characters shown, the time to
first visible text, chunks and updates, retracted or not, and how it ended.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from adapters.render import STREAM_COLUMNS, explain, stream_line, stream_rows
from bot.admin.decisions import replay_summary
from bot.app import GuardBot
from bot.audit.streamed import with_stream
from bot.cli.main import main
from middleware.decision_log import DecisionLog
from middleware.llm.openai_model import OpenAIChatModel
from middleware.types import (
    Action,
    Candidate,
    ChatRequest,
    Decision,
    Outcome,
    Stage,
    StreamChunk,
    StreamRecord,
    Verdict,
)
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.stream_support import (
    RecordingView,
    Streamed,
    audit_config,
    console_request,
    stream_log,
)


@pytest.fixture
async def streamed(tmp_path: Path, stub_llm: StubOpenAI) -> Streamed:
    return await stream_log(tmp_path, stub_llm)


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


async def test_logs_reads_the_streams_for_json_only(
    streamed: Streamed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table has no column for a stream: one query per decision would be wasted."""
    asked: list[str] = []
    read = DecisionLog.stream_of

    async def recorded(log: DecisionLog, decision_id: str) -> StreamRecord | None:
        asked.append(decision_id)
        return await read(log, decision_id)

    monkeypatch.setattr(DecisionLog, "stream_of", recorded)
    code, _, err = await asyncio.to_thread(_cli, capsys, "logs", "--db", str(streamed.db))
    assert code == 0 and asked == [], err
    code, _, err = await asyncio.to_thread(_cli, capsys, "logs", "--db", str(streamed.db), "--json")
    assert code == 0 and sorted(asked) == sorted(streamed.streams), err


async def test_admin_why_explains_the_stream(streamed: Streamed, tmp_path: Path) -> None:
    bot = GuardBot(audit_config(streamed.db), await DecisionLog.open(streamed.db), env={})
    try:
        request = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
        recent = await bot.admin(request, "recent 3")
        answer = await bot.admin(request, f"why {streamed.decisions['block'].id}")
    finally:
        await bot.close()
    assert "streamed: 2 chunk(s)" in answer and "RETRACTED" in answer
    assert "ended: stopped at chunk 1 by words block" in answer
    assert "Last 3 decisions" in recent


async def test_recent_shows_short_ids_that_why_accepts(streamed: Streamed) -> None:
    bot = GuardBot(audit_config(streamed.db), await DecisionLog.open(streamed.db), env={})
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
        # the prefix two ids share (made in one second: a long one) names them both
        first, second = sorted(d.id for d in everything)[:2]
        ambiguous = os.path.commonprefix([first, second])
        assert len(ambiguous) >= 7
        answer = await bot.admin(request, f"why {ambiguous}")
        assert "matches more than one decision" in answer, answer
        named = answer.split(": ", 1)[1].split("; ")[0].split(", ")  # as much as tells them apart
        assert all(any(i.startswith(n) for n in named) for i in (first, second)), named
    finally:
        await bot.close()


async def test_status_says_what_best_of_does_to_streaming_and_it_does_so(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    stub_llm.script = lambda _r: Reply(pieces=["First part. ", "Second part.\n"])
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub_llm.base_url)
    db = tmp_path / "g.db"
    bot = GuardBot(audit_config(db), await DecisionLog.open(db), env={}, model=model)
    admin = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
    try:
        status = await bot.admin(admin, "status")
        assert (
            "streaming: on: chunks of 10+ chars, each shown only after the output guards" in status
        )
        one = await bot.handle(console_request("hello"), view := RecordingView())
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
            decision = await bot.handle(console_request("hello"), view := RecordingView())
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


async def test_hostile_ids_and_guard_names_from_the_log_are_shown_inert(tmp_path: Path) -> None:
    """A log written by something else (or edited) can hold any id or guard name: every
    line that names them (admin recent, why, replay, show's stream line) writes them out."""
    esc, rlo = "\x1b[2J", "\u202e"
    guard = f"g{esc}{rlo}"
    db = tmp_path / "g.db"
    log = await DecisionLog.open(db)
    request = console_request("hello")
    blocking = Verdict(guard=guard, stage=Stage.OUTPUT, outcome=Outcome.BLOCK, blocking=True)
    stopped = Decision(
        id=f"01{esc}{rlo}stopped",
        request=request,
        action=Action.BLOCKED,
        blocked_by=guard,
        verdicts=[blocking],
        candidates=[Candidate(index=0, text="", safe=False)],
    )
    # Replied then; today's `words` blocks it: the replay lists it by id.
    replied = Decision(
        id=f"01{esc}{rlo}replied",
        request=request,
        action=Action.REPLIED,
        reply="a forbidden thing",
        candidates=[Candidate(index=0, text="a forbidden thing", safe=True, chosen=True)],
    )
    chunk = StreamChunk(
        index=0, raw_chars=5, chars=0, shown_chars=0, at_ms=1.0, released=False,
        verdicts=[blocking],
    )  # fmt: skip
    record = StreamRecord(
        chunk_chars=10, context_chars=0, max_hold_ms=0, chunks=[chunk], stopped_at_chunk=0
    )
    try:
        for d in (stopped, replied):
            await log.record(d)
        await log.record_stream_end(stopped.id, record)
    finally:
        await log.close()
    bot = GuardBot(audit_config(db), await DecisionLog.open(db), env={})
    admin = ChatRequest(platform="console", channel_id="console", user_id="root", text="")
    try:
        recent = await bot.admin(admin, "recent 5")
        summary = await replay_summary(bot, since=None)
        logged = await bot.log.get(stopped.id)
        assert logged is not None
        why = explain(await with_stream(bot.log, logged), every_verdict=True)
    finally:
        await bot.close()
    assert "newly blocked" in summary and "stopped at chunk 0 by g\\x1b[2J\\u202e block" in why
    # shortest unique prefixes, escapes and all (the ids differ only after them)
    assert "01\\x1b[2J\\u202es" in recent and "01\\x1b[2J\\u202er" in summary
    for text in (recent, summary, why):
        assert esc not in text and rlo not in text, text


async def test_stream_rows_are_read_by_column(streamed: Streamed) -> None:
    s = streamed.streams[streamed.decisions["block"].id]
    rows = stream_rows(s)
    assert STREAM_COLUMNS == (
        "chunk", "shown", "chars", "model chars", "visible", "at ms", "output verdicts",
    )  # fmt: skip
    assert [(r.chunk, r.shown, r.visible) for r in rows] == [
        ("0", "shown", str(s.chunks[0].shown_chars)),
        ("1", "BLOCKED", str(s.shown_chars)),
    ]
    assert "words block BLOCKS" in rows[1].output_verdicts and rows[1].chars == "0"
