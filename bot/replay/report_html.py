"""``--report replay.html``: one self-contained page for people who do not use a terminal.

The page carries its own CSS and an inline SVG chart, loads nothing (a
Content-Security-Policy forbids it, and there is no script), and escapes every
value that came from the log: messages are hostile text. Summary numbers sit
in elements with stable ids and ``data-count`` attributes so that tests (and
anyone scripting against the page) can read them back. Identical rows are one
row (as in the terminal table) with their count and every id behind a
disclosure; a streamed reply shows its recorded chunks through the shared
renderer (:func:`adapters.render.stream_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from adapters.render import STREAM_COLUMNS, stream_line, stream_rows
from bot.replay.results import NOT_RUN, GuardFlip, Kind, ReplayResult, RunReport

LABELS = {
    "selected": "Selected",
    "replayed": "Replayed",
    "unchanged": "Unchanged",
    "newly_blocked": "Newly blocked",
    "newly_allowed": "Newly allowed",
    "verdicts_changed": "Verdicts changed",
    "outcome_changed": "Error ↔ replied",
    "errors": "Errors",
    "not_replayable": "Not replayable",
}
KIND_LABELS = {
    Kind.NEWLY_BLOCKED: "Newly blocked",
    Kind.NEWLY_ALLOWED: "Newly allowed",
    Kind.VERDICTS_CHANGED: "Verdicts changed",
    Kind.OUTCOME_CHANGED: "Error ↔ replied",
    Kind.ERROR: "Error",
    Kind.NOT_REPLAYABLE: "Not replayable",
}
COLORS = {"to_block": "#c62828", "to_allow": "#2e7d32", "other": "#757575"}
DIRECTION_LABELS = {"to_block": "now blocks", "to_allow": "no longer blocks", "other": "other"}

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 12px}
.meta{color:#555;margin:0}.meta code{background:#eceff3;padding:1px 4px;border-radius:3px}
.banner{padding:10px 14px;border-radius:6px;margin:16px 0;font-weight:600}
.banner.ok{background:#e8f5e9;color:#1b5e20}.banner.changed{background:#fff3e0;color:#8a4b00}
.banner.warn{background:#fdecea;color:#8e1b1b}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:10px 14px}
.card dt{color:#555;font-size:13px}.card dd{margin:0;font-size:28px;font-weight:700}
.card.newly_blocked dd{color:#c62828}.card.newly_allowed dd{color:#2e7d32}
.card.errors dd,.card.not_replayable dd{color:#8a4b00}
.chart{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px}
.legend span{display:inline-block;margin-right:16px}.legend i{display:inline-block;width:12px;
height:12px;margin-right:6px;vertical-align:-1px;border-radius:2px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e6}
th,td{text-align:left;vertical-align:top;padding:8px 10px;border-bottom:1px solid #eceff3}
th{background:#eceff3;font-size:13px}
td.msg{white-space:pre-wrap;overflow-wrap:anywhere;max-width:320px}
td.id{font-family:ui-monospace,monospace;font-size:12px;overflow-wrap:anywhere}
.kind{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.kind.newly_blocked{background:#fdecea;color:#c62828}
.kind.newly_allowed{background:#e8f5e9;color:#2e7d32}
.kind.verdicts_changed{background:#e3f2fd;color:#0d47a1}
.kind.outcome_changed{background:#ede7f6;color:#4527a0}
.kind.error,.kind.not_replayable{background:#fff3e0;color:#8a4b00}
ul.flips{margin:0;padding-left:18px}.note{color:#555;font-size:13px}
.empty{color:#555;font-style:italic}.help{color:#333;max-width:800px}
.card.zero dd{color:#9aa0a6}
.stream{margin-top:6px}.stream-line{margin:0;font-size:13px}
table.chunks{margin-top:4px;font-size:12px}table.chunks td,table.chunks th{padding:3px 6px}
details summary{cursor:pointer;color:#0d47a1}ul.ids{margin:4px 0;padding-left:16px}
"""
HELP = (
    "Every selected message from the decision log was checked again under the policy "
    "named above. <b>Newly blocked</b>: the bot answered it then but would refuse it now. "
    "<b>Newly allowed</b>: it was refused then but would be answered now. <b>Verdicts "
    "changed</b>: the outcome is the same, but at least one guard now judges it "
    "differently. <b>Errors</b>: a guard failed on replay, so today's outcome is unknown. "
    "<b>Not replayable</b>: the log kept only a fingerprint of the text "
    "(<code>store_text = false</code>). Scores are the guards' own (0 = harmless, "
    "1 = certain); “not run” means the guard is disabled, removed or not used in that "
    "channel under this policy."
)


def _visible(text: str) -> str:
    """Control and bidi-override characters shown as \\uXXXX: hostile text must not
    reorder or hide what an auditor reads."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\u{ord(c):04x}" for c in text)


def _e(value: object) -> str:
    """Every value from the log goes through here: made visible, then HTML-escaped."""
    return escape(_visible(str(value)), quote=True)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _summary(report: RunReport) -> str:
    counts = report.tally.summary()
    cards = "".join(
        f'<div class="card {key}{" zero" if not n else ""}" id="summary-{key}" '
        f'data-key="{key}" data-count="{n}">'
        f"<dt>{LABELS[key]}</dt><dd>{n}</dd></div>"
        for key, n in counts.items()
    )
    changed = report.tally.changed
    if report.interrupted:
        banner = (
            '<p class="banner warn" id="interrupted">Interrupted: only '
            f"{report.tally.done} of {counts['selected']} decisions were replayed.</p>"
        )
    elif changed:
        banner = (
            f'<p class="banner changed" id="verdict" data-changed="{changed}">{changed} '
            f"decision{'s' if changed != 1 else ''} would be handled differently "
            "under this policy.</p>"
        )
    else:
        banner = (
            '<p class="banner ok" id="verdict" data-changed="0">No decision would be '
            "handled differently under this policy.</p>"
        )
    if report.limited:
        banner += (
            '<p class="banner warn" id="limited">The selection reached its limit of '
            f"{report.filters.get('limit')}: older matching decisions were not replayed.</p>"
        )
    return f'<section id="summary"><h2>Summary</h2>{banner}<dl class="cards">{cards}</dl></section>'


def chart_svg(flips_by_guard: dict[str, dict[str, int]]) -> str:
    """Horizontal stacked bars: per guard, verdicts that now block / no longer block / other."""
    if not flips_by_guard:
        return '<p class="empty" id="chart-empty">No guard changed its verdict.</p>'
    rows = sorted(flips_by_guard.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    biggest = max(sum(c.values()) for _, c in rows)
    label_w, bar_w, row_h, top = 180, 560, 28, 8
    height = top + row_h * len(rows) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-svg" width="{label_w + bar_w + 80}" '
        f'height="{height}" role="img" aria-label="Verdict changes by guard">'
    ]
    for i, (guard, counts) in enumerate(rows):
        y = top + i * row_h
        total = sum(counts.values())
        parts.append(
            f'<g class="bar" data-guard="{_e(guard)}" data-total="{total}" '
            + " ".join(f'data-{d.replace("_", "-")}="{counts[d]}"' for d in COLORS)
            + ">"
        )
        shown = guard if len(guard) <= 24 else guard[:23] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" font-size="13">'
            f"{_e(shown)}</text>"
        )
        x = float(label_w)
        for direction, color in COLORS.items():
            n = counts[direction]
            if not n:
                continue
            w = max(2.0, bar_w * n / biggest)
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                f'fill="{color}"><title>{_e(guard)}: {n} {DIRECTION_LABELS[direction]}'
                "</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 18}" font-size="13">{total}</text></g>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{c}"></i>{DIRECTION_LABELS[d]}</span>'
        for d, c in COLORS.items()
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def _flip(f: GuardFlip) -> str:
    where = f.stage if f.candidate_index is None else f"{f.stage}[{f.candidate_index}]"
    old = f.old_outcome if f.old_outcome == NOT_RUN else f"{f.old_outcome} {_score(f.old_score)}"
    new = f.new_outcome if f.new_outcome == NOT_RUN else f"{f.new_outcome} {_score(f.new_score)}"
    return (
        f'<li class="flip" data-guard="{_e(f.guard)}" data-old="{_e(f.old_outcome)}" '
        f'data-new="{_e(f.new_outcome)}"><b>{_e(f.guard)}</b> ({_e(where)}): '
        f'{_e(old)} → {_e(new)}<br><span class="note">{_e(f.reason)}</span></li>'
    )


def _stream(r: ReplayResult) -> str:
    """The recorded stream: how it went in one line, and each chunk with its verdicts (open
    when the stream stopped or was retracted, the cases an auditor came to see)."""
    s = r.stream
    if s is None:
        return ""
    head = f'<p class="stream-line">{_e(stream_line(s, blocked_by=r.old_blocked_by))}</p>'
    if not s.chunks:
        return f'<div class="stream" data-chunks="0">{head}</div>'
    cells = "".join(f"<th>{_e(name)}</th>" for name in STREAM_COLUMNS)
    rows = "".join(
        f'<tr class="chunk" data-index="{_e(row.chunk)}" data-shown="{_e(row.shown)}" '
        f'data-chars="{_e(row.chars)}" data-visible="{_e(row.visible)}">'
        + "".join(f"<td>{_e(cell)}</td>" for cell in row)
        + "</tr>"
        for row in stream_rows(s)
    )
    opened = " open" if s.retracted or s.stopped_at_chunk is not None else ""
    return (
        f'<div class="stream" data-chunks="{len(s.chunks)}" '
        f'data-retracted="{str(s.retracted).lower()}" data-shown-chars="{s.shown_chars}">'
        f"{head}<details{opened}><summary>{len(s.chunks)} streamed chunk(s)</summary>"
        f'<table class="chunks"><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table>'
        "</details></div>"
    )


def _ids(group: Sequence[ReplayResult], short: Mapping[str, str]) -> str:
    """The example's id; for a group, how many and every id, behind a disclosure."""
    first = group[0].decision_id
    cell = _e(short.get(first, first))
    if len(group) > 1:
        items = "".join(f"<li>{_e(r.decision_id)}</li>" for r in group)
        cell += (
            f'<details class="group"><summary>and {len(group) - 1} identical</summary>'
            f'<ul class="ids">{items}</ul></details>'
        )
    return cell


def _row(group: Sequence[ReplayResult], short: Mapping[str, str]) -> str:
    """One row for a group of identical results: the first as the example, with the count
    and the list of ids (the terminal table groups the same way)."""
    r = group[0]
    flips = "".join(_flip(f) for f in r.flips)
    detail = f'<ul class="flips">{flips}</ul>' if flips else ""
    if r.error:
        detail += f'<p class="note">{_e(r.error)}</p>'
    if r.note:
        detail += f'<p class="note">{_e(r.note)}</p>'
    detail += _stream(r)
    after = r.new_action or "–"
    ids = " ".join(_e(x.decision_id) for x in group)
    return (
        f'<tr class="change" data-id="{_e(r.decision_id)}" data-ids="{ids}" '
        f'data-count="{len(group)}" data-kind="{r.kind.value}">'
        f"<td>{_e(r.created_utc.strftime('%Y-%m-%d %H:%M:%S'))} UTC</td>"
        f'<td class="id">{_ids(group, short)}</td>'
        f"<td>{_e(r.platform)} {_e(r.channel_id)}<br>{_e(r.user_id)}</td>"
        f'<td class="msg">{_e(r.text)}</td>'
        f'<td><span class="kind {r.kind.value}">{KIND_LABELS[r.kind]}</span><br>'
        f"{_e(r.old_action)} → {_e(after)}</td><td>{detail}</td></tr>"
    )


def _table(
    section_id: str,
    title: str,
    groups: Sequence[Sequence[ReplayResult]],
    empty: str,
    short: Mapping[str, str],
) -> str:
    if not groups:
        body = f'<p class="empty">{empty}</p>'
    else:
        body = (
            "<table><thead><tr><th>When</th><th>Decision</th><th>Where / who</th>"
            "<th>Message</th><th>Change</th><th>Why</th></tr></thead><tbody>"
            + "".join(_row(g, short) for g in groups)
            + "</tbody></table>"
        )
    count = sum(len(g) for g in groups)
    return (
        f'<section id="{section_id}" data-count="{count}" data-rows="{len(groups)}">'
        f"<h2>{title}</h2>{body}</section>"
    )


def render_html(report: RunReport, short: Mapping[str, str] | None = None) -> str:
    """The page; ``short`` maps ids to their shortest unique prefix (shown; the full ids
    stay in the ``data-id`` attributes and in each group's list)."""
    short = short or {}
    groups = report.tally.grouped_notable()
    changed = [g for g in groups if g[0].changed]
    problems = [g for g in groups if g[0].kind in (Kind.ERROR, Kind.NOT_REPLAYABLE)]
    filters = ", ".join(f"{k} = {v}" for k, v in report.filters.items() if v not in (None, []))
    meta = (
        f'<p class="meta">Run <code id="run-id">{_e(report.run_id or "(not recorded)")}</code> · '
        f"{_e(report.created_utc.strftime('%Y-%m-%d %H:%M:%S'))} UTC · by {_e(report.actor)} · "
        f"mode {_e(report.mode)} · config <code>{_e(report.config_fingerprint)}</code> "
        f"({_e(report.config_source)}) · {report.duration_ms / 1000:.1f} s</p>"
        f'<p class="meta">Selection: {_e(filters or "all logged decisions")}</p>'
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>guardbot replay {_e(report.run_id)}</title><style>{CSS}</style></head>"
        "<body><main><h1>What would this policy have done?</h1>"
        + meta
        + _summary(report)
        + f'<p class="help">{HELP}</p>'
        + '<section id="chart"><h2>Verdict changes by guard</h2><div class="chart">'
        + chart_svg(report.tally.flips_by_guard)
        + "</div></section>"
        + _table("changes", "Changed decisions", changed, "No decision changed.", short)
        + _table(
            "problems",
            "Errors, and decisions that could not be replayed",
            problems,
            "Every selected decision was replayed.",
            short,
        )
        + "</main></body></html>\n"
    )
