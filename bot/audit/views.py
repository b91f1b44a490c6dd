"""Rich tables for the audit commands (`guardbot logs`, `show`, `stats`, `verify`, `prune`).

Message text is hostile input: it is shown as plain :class:`Text` (never as
rich markup) with control characters, including terminal escape sequences,
replaced, so a message cannot restyle or take over the auditor's terminal.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.render import fired, outcome_of, plain, stage_of, timings_line
from middleware.decision_log import ChainReport, StoredDecision

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


def logs_table(found: list[StoredDecision]) -> None:
    console = _console()
    if not found:
        console.print("no decisions match")
        return
    table = Table(show_lines=False, pad_edge=False)
    for name in ("time (UTC)", "id", "where", "user", "action", "guard", "message", "reply", "ms"):
        fixed = name in ("time (UTC)", "id", "action", "ms")
        table.add_column(name, no_wrap=fixed, min_width=26 if name == "id" else None)
    for s in found:
        d, r = s.decision, s.decision.request
        text = r.text if s.text_stored else f"[not stored: {s.text_chars} chars]"
        reply = d.reply if s.text_stored else f"[not stored: {s.reply_chars} chars]"
        table.add_row(
            d.created_utc.strftime("%Y-%m-%d %H:%M:%S"),
            d.id,
            clean(f"{r.platform}:{r.channel_id}" + (f"/{r.thread_id}" if r.thread_id else ""), 28),
            clean(r.user_name or r.user_id, 16),
            Text(d.action.value, style=ACTION_STYLE.get(d.action.value, "")),
            clean(d.blocked_by or ", ".join(sorted(fired(d))), 18),
            clean(text, 48),
            clean(reply, 40),
            _num(d.timings.total_ms, digits=0),
        )
    console.print(table)
    console.print(f"{len(found)} decision(s); `guardbot show ID` for one in full")


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
        for name in ("model", "calls", "tokens in", "tokens out", "errors"):
            mt.add_column(name, justify="left" if name == "model" else "right")
        for model, m in data["models"].items():
            mt.add_row(
                clean(model), str(m["calls"]), f"{m['tokens_in']:,}", f"{m['tokens_out']:,}",
                str(m["errors"]),
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


def verify(report: ChainReport, integrity: str) -> None:
    console = _console()
    start = (
        "the first decision" if set(report.start_sha256) == {"0"} else "the last prune checkpoint"
    )
    if report.ok:
        console.print(
            f"[green]ok[/green]: {report.checked} decision(s) verified from {start}; "
            f"head {report.head_id or '-'} sha256 {report.head_sha256}"
        )
        console.print("(note the head hash somewhere else to detect a rewritten tail later)")
    else:
        console.print(
            Text(f"TAMPERED ({report.problem}): ", style="bold red") + clean(report.message)
        )
    style = "green" if integrity == "ok" else "bold red"
    console.print(Text("SQLite integrity_check: ") + Text(integrity, style=style))


def pruned(result: dict[str, Any], report: ChainReport | None) -> None:
    console = _console()
    if result["dry_run"]:
        console.print(
            f"would remove {result['removed']} decision(s) older than {result['cutoff_utc']}"
        )
        return
    console.print(f"removed {result['removed']} decision(s) older than {result['cutoff_utc']}")
    if report is not None:
        state = "[green]verifies[/green]" if report.ok else f"[red]BROKEN[/red]: {report.message}"
        console.print(f"remaining chain of {report.checked} decision(s) {state}")
