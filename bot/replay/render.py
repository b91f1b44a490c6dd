"""Terminal output of a replay: the summary, each changed decision, and past runs.

Rich tables, like the other audit commands. Message text from the log is
hostile: it is printed as plain text (rich markup in it is not interpreted)
and shortened, and control characters are shown as escapes so a message
cannot move the cursor or rewrite the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.render import plain, stream_line
from bot.replay.report_html import KIND_LABELS, LABELS
from bot.replay.results import NOT_RUN, GuardFlip, Kind, ReplayResult, RunReport
from middleware.decision_log.rows import ReplayRunRow

KIND_STYLES = {
    Kind.NEWLY_BLOCKED: "bold red",
    Kind.NEWLY_ALLOWED: "bold green",
    Kind.VERDICTS_CHANGED: "bold blue",
    Kind.OUTCOME_CHANGED: "bold magenta",
    Kind.ERROR: "bold yellow",
    Kind.NOT_REPLAYABLE: "yellow",
}


def safe_text(text: str, limit: int = 120) -> str:
    """One line, control characters made inert, shortened (the shared renderer's rule)."""
    return plain(text, limit)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def describe_flip(f: GuardFlip) -> str:
    # output[0]: the candidate's index as JSON and `guardbot show` number it
    where = f.stage if f.candidate_index is None else f"{f.stage}[{f.candidate_index}]"
    old = f.old_outcome if f.old_outcome == NOT_RUN else f"{f.old_outcome} {_score(f.old_score)}"
    new = f.new_outcome if f.new_outcome == NOT_RUN else f"{f.new_outcome} {_score(f.new_score)}"
    return f"{f.guard} ({where}): {old} → {new}"


def summary_table(report: RunReport) -> Table:
    title = "Replay summary" + (" (interrupted)" if report.interrupted else "")
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, n in report.tally.summary().items():
        style = "bold" if n and key in ("newly_blocked", "newly_allowed", "errors") else ""
        table.add_row(LABELS[key], Text(str(n), style=style))
    return table


def changes_table(
    groups: Sequence[Sequence[ReplayResult]], short: Mapping[str, str] | None = None
) -> Table:
    """One row per group of identical results (see :meth:`Tally.grouped_notable`)."""
    short = short or {}
    table = Table(title="Changed decisions", title_justify="left", show_lines=True, expand=True)
    table.add_column("decision", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("change", no_wrap=True)
    table.add_column("message and why", ratio=1, min_width=20)
    for group in groups:
        r = group[0]
        where = Text(f"{short.get(r.decision_id, r.decision_id)}\n", style="")
        where.append(f"{r.created_utc:%Y-%m-%d %H:%M:%S} UTC\n")
        where.append(safe_text(f"{r.platform} {r.channel_id} {r.user_id}".strip(), 26), "dim")
        if len(group) > 1:
            where.append(f"\nand {len(group) - 1} identical", "bold")
        change = Text(KIND_LABELS[r.kind], style=KIND_STYLES[r.kind])
        change.append(f"\n{r.old_action} → {r.new_action or '–'}", style="")
        why = Text(safe_text(r.text, 160) or "(text not stored)", style="italic")
        for f in r.flips:
            why.append("\n" + safe_text(describe_flip(f), 200), style="bold")
            if f.reason:
                why.append("\n  " + safe_text(f.reason, 200), style="")
        if r.error:
            why.append("\n" + safe_text(r.error, 300), style="yellow")
        if r.note:
            why.append("\nnote: " + safe_text(r.note, 300), style="dim")
        if r.stream is not None:  # what was shown then (`guardbot show` has every chunk)
            why.append("\n" + stream_line(r.stream, blocked_by=r.old_blocked_by), style="dim")
        table.add_row(where, change, why)
    return table


def print_report(
    console: Console, report: RunReport, short: Mapping[str, str] | None = None
) -> None:
    console.print(summary_table(report))
    groups = report.tally.grouped_notable()
    if groups:
        console.print(changes_table(groups, short))
    console.print(
        Text(
            f"run {report.run_id or '(not recorded)'} · mode {report.mode} · "
            f"config {report.config_fingerprint} "
            f"({safe_text(report.config_source, 80)}) · {report.duration_ms / 1000:.2f} s"
        )
    )
    if report.limited:
        console.print(
            Text(
                f"warning: the selection reached --limit {report.filters.get('limit')}; "
                "older matching decisions were not replayed",
                style="yellow",
            )
        )


NARROW = 130  # below this many columns a run takes two lines instead of a table row


def _mode(run: ReplayRunRow) -> tuple[str, str]:
    summary = run.summary if isinstance(run.summary, dict) else {}
    mode = str(summary.get("mode", "?")) + (" (interrupted)" if summary.get("interrupted") else "")
    return mode, str(summary.get("errors", "?"))


def print_runs(console: Console, runs: Sequence[ReplayRunRow]) -> None:
    """Past runs, newest first: a table when the terminal is wide, two lines each when not."""
    if console.width >= NARROW:
        console.print(runs_table(runs))
        return
    console.print(Text("Replay runs", style="italic"))
    for run in runs:
        mode, errors = _mode(run)
        console.print(
            Text(f"{run.created_utc:%Y-%m-%d %H:%M} ")
            + Text(f"{run.decisions_count} decisions, ")
            + Text(f"{run.changed_count} changed", style="bold" if run.changed_count else "")
            + Text(f", {errors} errors · {mode} · by {safe_text(run.actor, 24)}"),
            overflow="fold",
        )
        console.print(
            Text(f"  run {run.id} · config {run.config_fingerprint}", style="dim"), overflow="fold"
        )


def runs_table(runs: Sequence[ReplayRunRow]) -> Table:
    table = Table(title="Replay runs", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("run", "when (UTC)", "by", "config", "mode", "decisions", "changed", "errors"):
        table.add_column(
            name, no_wrap=True, justify="right" if name in ("decisions", "changed") else "left"
        )
    for run in runs:
        mode, errors = _mode(run)
        table.add_row(
            run.id,
            run.created_utc.strftime("%Y-%m-%d %H:%M:%S"),
            Text(safe_text(run.actor, 40)),
            run.config_fingerprint,
            mode,
            str(run.decisions_count),
            str(run.changed_count),
            errors,
        )
    return table
