"""Rich tables for the audit commands (`guardbot logs`, `show`, `stats`, `verify`, `prune`).

Message text is hostile input: it is shown as plain :class:`Text` (never as
rich markup) with control characters, including terminal escape sequences,
replaced, so a message cannot restyle or take over the auditor's terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.render import (
    STREAM_COLUMNS,
    clip,
    fired,
    outcome_of,
    plain,
    stage_of,
    stream_line,
    stream_rows,
    timings_line,
)
from middleware.decision_log import ChainReport, StoredDecision
from middleware.types import Decision

ACTION_STYLE = {"replied": "green", "blocked": "red", "error": "yellow"}


def clean(text: str | None, limit: int | None = None, *, one_line: bool = True) -> Text:
    """Hostile text as a rich Text (never markup), made inert by the shared renderer."""
    return Text(plain(text, limit, one_line=one_line))


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _console() -> Console:
    # Piped into less or a file, 80 columns would squash the tables; use a wide page.
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=200 if wide else None)


NARROW = 110  # below this many columns a decision takes two lines instead of a table row


def _where(s: StoredDecision) -> str:
    r = s.decision.request
    return f"{r.platform}:{r.channel_id}" + (f"/{r.thread_id}" if r.thread_id else "")


def _texts(s: StoredDecision) -> tuple[str, str]:
    d = s.decision
    if not s.text_stored:
        return f"[not stored: {s.text_chars} chars]", f"[not stored: {s.reply_chars} chars]"
    return d.request.text, d.reply


def _action(s: StoredDecision) -> Text:
    action = s.decision.action.value
    return Text(action, style=ACTION_STYLE.get(action, ""))


def logs_table(found: list[StoredDecision], short: Mapping[str, str] | None = None) -> None:
    """Decisions, newest first: a table on a wide terminal, two lines each on a narrow one.

    ``short`` maps ids to their shortest unique prefix (``guardbot show`` takes it).
    """
    console = _console()
    if not found:
        console.print("no decisions match")
        return
    short = short or {}
    if console.width < NARROW:
        _logs_lines(console, found, short)
    else:
        _logs_wide(console, found, short)
    console.print(f"{len(found)} decision(s); `guardbot show ID` for one in full")


def _logs_wide(console: Console, found: list[StoredDecision], short: Mapping[str, str]) -> None:
    """One row each; fixed columns sized to their content (capped), the rest to the text."""
    rows = []
    for s in found:
        d = s.decision
        text, reply = _texts(s)
        rows.append(
            (
                d.created_utc.strftime("%m-%d %H:%M:%S"),
                short.get(d.id, d.id),
                plain(_where(s)),
                plain(d.request.user_name or d.request.user_id),
                d.action.value,
                plain(d.blocked_by or ", ".join(sorted(fired(d)))),
                plain(text),
                plain(reply),
                _num(d.timings.total_ms, digits=0),
            )
        )
    names = ("time (UTC)", "id", "where", "user", "action", "guard", "message", "reply", "ms")
    caps = (14, 26, 18, 12, 7, 18, None, None, 8)
    widths = [
        min(cap, max(len(name), *(len(r[i]) for r in rows))) if cap else 0
        for i, (name, cap) in enumerate(zip(names, caps, strict=True))
    ]
    room = console.width - sum(widths) - (len(names) - 1)  # the box's one-space divider
    widths[6] = max(16, room * 3 // 5)
    widths[7] = max(12, room - widths[6])
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=0, show_edge=False)
    for name, width in zip(names, widths, strict=True):
        table.add_column(
            name, width=width, no_wrap=True, overflow="ellipsis",
            justify="right" if name == "ms" else "left",
        )  # fmt: skip
    for row in rows:
        cells: list[Text] = [Text(clip(cell, w)) for cell, w in zip(row, widths, strict=True)]
        cells[4].stylize(ACTION_STYLE.get(row[4], ""))
        table.add_row(*cells)
    console.print(table)


def _logs_lines(console: Console, found: list[StoredDecision], short: Mapping[str, str]) -> None:
    """``time id action guard · where · user · ms`` then ``  message → reply``, each clipped."""
    width = max(console.width, 40)
    for s in found:
        d = s.decision
        guard = d.blocked_by or ", ".join(sorted(fired(d)))
        head = Text(f"{d.created_utc:%m-%d %H:%M:%S} ") + Text(short.get(d.id, d.id), style="bold")
        head += Text(" ") + _action(s)
        tail = Text(f" · {_num(d.timings.total_ms, ' ms', 0)}")
        user = d.request.user_name or d.request.user_id
        facts = [plain(x, 24) for x in (guard, user, _where(s))]  # the place is cut first
        room = width - len(head) - len(tail)
        head += Text(plain(" · " + " · ".join(f for f in facts if f), max(room, 8)))
        console.print(head + tail, no_wrap=True, overflow="ellipsis")
        text, reply = _texts(s)
        room = width - 2 - 3  # indent, arrow
        message = plain(text, max(room * 3 // 5, 12))
        console.print(
            Text("  ") + Text(message) + Text(" → ", style="dim")
            + Text(plain(reply, max(room - len(message), 12))),
            no_wrap=True, overflow="ellipsis",
        )  # fmt: skip


def show(s: StoredDecision) -> None:
    console = _console()
    d, r, t = s.decision, s.decision.request, s.decision.timings
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("decision", d.id),
        ("created", d.created_utc.isoformat()),
        ("where", clean(f"{r.platform} channel {r.channel_id} thread {r.thread_id or '-'}")),
        ("user", clean(f"{r.user_name} ({r.user_id})" if r.user_name else r.user_id)),
        ("message id", clean(r.message_id or "-")),
        ("history", f"{s.history_turns} earlier turn(s) given as context"),
        ("text", _text(s, r.text, s.text_chars, s.text_sha256)),
        ("action", Text(d.action.value, style=ACTION_STYLE.get(d.action.value, ""))),
        ("blocked by", clean(d.blocked_by or "-")),
        ("error", clean(d.error or "-", one_line=False)),
        ("reply", _text(s, d.reply, s.reply_chars, s.reply_sha256)),
        (
            "delivery",
            clean(d.delivery.status + (f" ({d.delivery.error})" if d.delivery.error else "")),
        ),
        ("config", d.config_fingerprint or "-"),
        ("chain", f"#{s.seq} sha256 {s.sha256[:16]}… prev {s.prev_sha256[:16]}…"),
    ]
    for key, value in rows:
        head.add_row(key, value)
    console.print(head)
    if d.verdicts:
        vt = Table(title="verdicts", title_justify="left")
        for name in ("guard", "stage", "outcome", "category", "score", "ms", "reason"):
            vt.add_column(name, justify="right" if name in ("score", "ms") else "left")
        for v in d.verdicts:
            stage, outcome = stage_of(v), outcome_of(v)
            style = "red" if v.blocking else ("yellow" if v.outcome.value != "allow" else "")
            vt.add_row(
                clean(v.guard), stage, Text(outcome, style=style), clean(v.category or "-"),
                _num(v.score, digits=2), _num(v.latency_ms), clean(v.reason, 60),
            )  # fmt: skip
        console.print(vt)
    if d.candidates:
        ct = Table(title="candidates", title_justify="left")
        for name in (
            "#",
            "chosen",
            "safe",
            "model",
            "temp",
            "ms",
            "tokens",
            "score",
            "text / error",
        ):
            ct.add_column(name)
        for c in d.candidates:
            body = c.error or (c.text if s.text_stored else "[not stored]")
            safe = "-" if c.safe is None else ("yes" if c.safe else "no")
            ct.add_row(
                str(c.index), "✓" if c.chosen else "", safe,
                clean(c.model, 20), _num(c.temperature, digits=2), _num(c.latency_ms),
                f"{c.tokens_in}+{c.tokens_out}", _num(c.score, digits=2), clean(body, 60),
            )  # fmt: skip
        console.print(ct)
    if d.stream is not None:
        _stream(console, d)
    if d.selection:
        why = d.selection.reasoning or "-"
        conf = f", confidence {d.selection.confidence:.2f}" if d.selection.confidence else ""
        console.print(Text(f"choice: {d.selection.method}{conf} — ") + clean(why, one_line=False))
    console.print(timings_line(t))
    calls = ", ".join(f"{c.purpose} {c.model} {c.tokens_in}+{c.tokens_out}" for c in d.llm_calls)
    console.print(
        Text(f"tokens {d.tokens_in} in + {d.tokens_out} out, cost ${d.cost_usd:.6f}")
        + (Text("; calls: ") + clean(calls) if calls else Text(""))
    )
    for e in s.deliveries:
        console.print(clean(f"delivery {e.created_utc.isoformat()}: {e.status} {e.error or ''}"))


def _stream(console: Console, d: Decision) -> None:
    """The streamed reply: one line on how it went, then what each chunk showed and why."""
    assert d.stream is not None
    console.print(Text(stream_line(d.stream, blocked_by=d.blocked_by)))
    if not d.stream.chunks:
        return
    table = Table(title="streamed chunks", title_justify="left")
    for name in STREAM_COLUMNS:
        table.add_column(name, justify="left" if name in ("shown", "output verdicts") else "right")
    for row in stream_rows(d.stream):
        cells = {field: Text(cell) for field, cell in row._asdict().items()}
        cells["shown"].stylize({"BLOCKED": "red", "shown": ""}.get(row.shown, "yellow"))
        table.add_row(*cells.values())
    console.print(table)


def _text(s: StoredDecision, text: str, chars: int, sha: str) -> Text:
    if not s.text_stored:
        return Text(f"[not stored: {chars} chars, sha256 {sha[:16]}…]", style="dim")
    return clean(text, one_line=False)


def stats(data: dict[str, Any]) -> None:
    console = _console()
    total = data["decisions"]
    window = f"{data['since'] or 'the beginning'} .. {data['until'] or 'now'}"
    console.print(f"[bold]{total}[/bold] decisions, {window} (UTC)")
    if not total:
        return
    actions = data["actions"]
    rate = data["block_rate_ratio"] or 0.0
    console.print(
        f"replied {actions.get('replied', 0)}, blocked {actions.get('blocked', 0)} ({rate:.1%}), "
        f"error {actions.get('error', 0)}; tokens {data['tokens_in']:,} in + "
        f"{data['tokens_out']:,} out, cost ${data['cost_usd']:.4f}"
    )
    saved = data["saved_ratio"] or 0.0
    console.print(
        f"running guards in parallel saved {_num(data['saved_ms'] / 1000, ' s')} in total, "
        f"{_num(data['saved_per_decision_ms'])} ms per message ({saved:.1%} of the sequential time)"
    )
    _rates(console, "blocked by guard", data["blocked_by_guard"])
    _rates(console, "blocked by category", data["blocked_by_category"])
    lt = Table(title="latency by stage (ms)", title_justify="left")
    for name in ("stage", "p50", "p95"):
        lt.add_column(name, justify="left" if name == "stage" else "right")
    for stage, spread in data["latency"].items():
        lt.add_row(stage.removesuffix("_ms"), _num(spread["p50_ms"]), _num(spread["p95_ms"]))
    console.print(lt)
    if data["guards"]:
        gt = Table(title="guards", title_justify="left")
        for name in ("guard", "verdicts", "fired", "outcomes", "p50 ms", "p95 ms"):
            gt.add_column(name, justify="left" if name in ("guard", "outcomes") else "right")
        for guard, g in data["guards"].items():
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(g["outcomes"].items()))
            gt.add_row(
                clean(guard), str(g["verdicts"]), f"{(g['fired_ratio'] or 0):.1%}",
                outcomes, _num(g["p50_ms"]), _num(g["p95_ms"]),
            )  # fmt: skip
        console.print(gt)
    if data["models"]:
        mt = Table(title="model calls", title_justify="left")
        for name in ("model", "calls", "tokens in", "tokens out", "errors", "cancelled"):
            mt.add_column(name, justify="left" if name == "model" else "right")
        for model, m in data["models"].items():
            mt.add_row(
                clean(model), str(m["calls"]), f"{m['tokens_in']:,}", f"{m['tokens_out']:,}",
                str(m["errors"]), str(m.get("cancelled", 0)),
            )  # fmt: skip
        console.print(mt)


def _rates(console: Console, title: str, rows: dict[str, Any]) -> None:
    if not rows:
        return
    table = Table(title=title, title_justify="left")
    for name in ("name", "blocked", "share of all messages"):
        table.add_column(name, justify="left" if name == "name" else "right")
    for name, row in rows.items():
        table.add_row(clean(name), str(row["blocked"]), f"{(row['block_rate_ratio'] or 0):.2%}")
    console.print(table)


def verify(report: ChainReport, integrity: str, anchor: dict[str, Any] | None = None) -> None:
    console = _console()
    start = "the start of the log" if set(report.start_sha256) == {"0"} else "the last prune"
    if report.ok:
        kinds = ", ".join(f"{n} {kind}(s)" for kind, n in sorted(report.counts.items()))
        head = "-"
        if report.head_kind is not None:
            head = f"#{report.head_seq} ({report.head_kind} {report.head_id})"
        console.print(
            f"[green]ok[/green]: {report.checked} record(s) verified ({kinds or 'none'}) from "
            f"{start}; head {head} sha256 {report.head_sha256}"
        )
        if report.head_kind is not None:
            console.print(
                "(note the head somewhere else; `guardbot verify --anchor "
                f"{report.head_seq}:{report.head_sha256}` later shows a rewritten tail)"
            )
    else:
        console.print(
            Text(f"TAMPERED ({report.problem}): ", style="bold red") + clean(report.message)
        )
    for stream in report.undecided_streams:
        console.print(
            Text("warning: ", style="bold yellow")
            + clean(f"decision {stream.decision_id} (stream chunks up to #{stream.last_seq})")
            + undecided(stream.chunks, stream.shown_chars)
        )
    for warning in report.warnings:
        console.print(Text("warning: ", style="bold yellow") + clean(warning))
    if anchor is not None:
        message = clean(anchor["message"])
        message.stylize("green" if anchor["ok"] else "bold red")
        console.print(Text(f"anchor #{anchor['seq']}: ") + message)
    style = "green" if integrity == "ok" else "bold red"
    console.print(Text("SQLite integrity_check: ") + Text(integrity, style=style))


def undecided(chunks: int, shown_chars: int) -> str:
    """A stream shown with no decision recorded, as verify and show word it."""
    return (
        f": {chunks} chunk(s), {shown_chars} character(s) were shown, yet no decision was "
        "recorded (a crash or a failed decision write mid-stream)"
    )


def pruned(result: dict[str, Any], report: ChainReport | None) -> None:
    console = _console()
    verb = "would remove" if result["dry_run"] else "removed"
    console.print(f"{verb} {result['removed']} decision(s) older than {result['cutoff_utc']}")
    others = {k: n for k, n in sorted(result["removed_by_kind"].items()) if k != "decision"}
    if others:
        listed = ", ".join(f"{n} {kind}(s)" for kind, n in others.items())
        console.print(
            f"with the other records in that range: {listed} (the settings in force at the cut "
            "are kept in the prune's checkpoint)"
        )
    if result["dry_run"]:
        return
    if report is not None:
        state = "[green]verifies[/green]" if report.ok else f"[red]BROKEN[/red]: {report.message}"
        console.print(f"remaining chain of {report.checked} record(s) {state}")
