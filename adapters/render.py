"""The one way a Decision becomes text for people, and the one way hostile text is made inert.

The console's ``--explain``, the admin ``why`` and ``recent`` answers, the
audit tables of ``guardbot show`` / ``guardbot logs`` and the replay report all
describe decisions; they build their lines here, so a verdict, a timing or a
candidate reads the same everywhere. It lives in ``adapters`` because the
console is an adapter and may not import the application; ``bot`` imports it.

Message text from the log is hostile: :func:`plain` is the one escaping
function of every terminal surface. It shows control characters, ESC/CSI/OSC
sequences, C1 controls, bidi overrides and isolates *visibly* (``\x1b``,
``\u202e``), so a message can neither restyle nor take over a terminal nor
hide what it did; :func:`quote` also defuses chat mentions so reading a
decision back in Slack or Discord pings nobody.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

from middleware.masking import mask_text
from middleware.types import (
    Candidate,
    Decision,
    Outcome,
    StreamChunk,
    StreamRecord,
    Timings,
    Verdict,
)

# C0 controls but tab and newline (ESC starts every CSI/OSC sequence, CR rewrites a
# line), DEL, C1 controls (0x9b is a one-byte CSI), line/paragraph separators, and
# the bidi marks, embeddings, overrides and isolates that reorder what a line shows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
# Mentions in quoted user text must not ping anyone when an admin reads it back.
_MENTION = re.compile(r"(<[!@#]|@(?=everyone|here|channel))")
NOTICED = (Outcome.FLAG, Outcome.REDACT, Outcome.ERROR)


def clip(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with secrets masked and every control and bidi character written out
    (ESC -> ``\\x1b``): what any terminal or chat surface may show of untrusted text."""
    text = mask_text(text)  # an in-memory decision (``--explain``) is not masked yet
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")  # a Windows line end is a line end, not a rewrite
    return _CONTROL.sub(_visible, text)


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """JSON for a terminal or a file someone will ``cat``: non-ASCII text stays readable,
    but DEL, C1 controls, line separators and bidi marks are written as ``\\uXXXX``
    escapes (JSON already escapes C0), so the output is still valid JSON and a hostile
    value cannot restyle or reorder the terminal that shows it."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def plain(text: str | None, limit: int | None = None, *, one_line: bool = True) -> str:
    """Text safe for a terminal: controls shown escaped, optionally on one line."""
    value = escape(text or "")
    if one_line:
        value = value.replace("\n", " ⏎ ").replace("\t", " ")
    return clip(value, limit)


def quote(text: str, limit: int = 80) -> str:
    """User or admin text for a chat answer: one line, clipped, mentions defused."""
    flat = clip(" ".join(escape(text).split()), limit)
    return _MENTION.sub(lambda m: m.group(1) + "\u200b", flat)


def stage_of(v: Verdict) -> str:
    """``input``, ``output[1]``: the stage, and the candidate an output verdict is about."""
    return v.stage.value + (f"[{v.candidate_index}]" if v.candidate_index is not None else "")


def outcome_of(v: Verdict) -> str:
    return v.outcome.value + (" BLOCKS" if v.blocking else "")


def verdict_line(v: Verdict, *, reason_chars: int = 150) -> str:
    """One verdict: where, guard, outcome, category, score, latency and reason."""
    category = f", category {plain(v.category, 40)}" if v.category else ""
    score = f", score {v.score:.2f}" if v.score is not None else ""
    reason = v.reason or ("skipped" if v.outcome is Outcome.SKIPPED else "")
    return (
        f"{stage_of(v):<9} {plain(v.guard, 40):<18} {outcome_of(v)}{category}{score} "
        f"({v.latency_ms:.1f} ms)" + (f": {quote(reason, reason_chars)}" if reason else "")
    )


def candidate_state(c: Candidate) -> str:
    if c.chosen:
        return "chosen"
    return plain(c.error, 120) if c.error else ("unsafe" if c.safe is False else "not chosen")


def timings_line(t: Timings) -> str:
    return (
        f"timings: total {t.total_ms:.1f} ms, input guards {t.input_guards_ms:.1f} ms, "
        f"generation {t.generation_ms:.1f} ms, output guards {t.output_guards_ms:.1f} ms, "
        f"selection {t.selection_ms:.1f} ms; saved by running in parallel {t.saved_ms:.1f} ms"
    )


def head_line(d: Decision) -> str:
    by = f" by {quote(d.blocked_by, 40)}" if d.blocked_by else ""
    return f"Decision {plain(d.id, 40)}: {d.action.value}{by}"


def fired(d: Decision) -> list[str]:
    """The guards that did something (not a plain allow or skip), in order."""
    return list(
        dict.fromkeys(v.guard for v in d.verdicts if v.outcome.value not in ("allow", "skipped"))
    )


def summary_line(d: Decision, short: Mapping[str, str] | None = None) -> str:
    """One decision in a list (the admin ``recent`` answer); ``short`` maps ids to their
    shortest unique prefix (the log's ``short_ids``), which every id argument accepts."""
    r = d.request
    by = f" by {quote(d.blocked_by, 40)}" if d.blocked_by else ""
    text = quote(r.text, 50) if r.text else "(text not stored)"
    return (
        f"{plain((short or {}).get(d.id, d.id), 40)}  {d.created_utc:%m-%d %H:%M}  "
        f"{r.platform}:{plain(r.channel_id, 40)}  "
        f"{quote(r.user_name or r.user_id, 20)}  {d.action.value}{by}  {text}"
    )


def explain(d: Decision, *, every_verdict: bool = False) -> str:
    """A decision in a few lines: why it ended as it did, what ran, how long it took.

    ``every_verdict`` adds one line per verdict and per candidate (the console's
    ``--explain``); without it the answer stays short enough for one chat message.
    """
    r = d.request
    lines = [
        head_line(d),
        f"when: {d.created_utc:%Y-%m-%d %H:%M:%S} UTC in {r.platform}:{plain(r.channel_id, 40)}, "
        f"from {quote(r.user_name or r.user_id, 30)}",
        "message: " + (quote(r.text, 200) if r.text else "(text not stored)"),
    ]
    for v in d.verdicts:
        if v.blocking:
            score = f", score {v.score:.2f}" if v.score is not None else ""
            category = f", category {plain(v.category, 40)}" if v.category else ""
            lines.append(
                f"because: guard {quote(v.guard, 40)} ({v.stage.value}) said {v.outcome.value}"
                f"{category}{score}" + (f": {quote(v.reason, 150)}" if v.reason else "")
            )
    if d.error:
        lines.append(f"error: {quote(d.error, 200)}")
    counts = Counter(v.outcome.value for v in d.verdicts)
    if counts:
        noticed = [
            f"{quote(v.guard, 40)} {v.outcome.value}"
            for v in d.verdicts
            if not v.blocking and v.outcome in NOTICED
        ]
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        lines.append(f"verdicts: {summary}" + (f" (also: {', '.join(noticed)})" if noticed else ""))
    if every_verdict:
        lines += [f"  {verdict_line(v)}" for v in d.verdicts]
    if d.candidates:
        lines.append(_candidates(d))
    if every_verdict:
        lines += [
            f"  candidate {c.index}: {plain(c.model, 60)} {c.latency_ms:.0f} ms, "
            f"{candidate_state(c)}"
            for c in d.candidates
        ]
    lines.append("reply: " + (quote(d.reply, 200) if d.reply else "(none)"))
    if d.stream is not None:
        lines.append(stream_line(d.stream, blocked_by=d.blocked_by))
        if every_verdict:
            lines += [f"  {chunk_line(c, d.stream)}" for c in d.stream.chunks]
    lines.append(timings_line(d.timings))
    lines.append(
        f"tokens {d.tokens_in}+{d.tokens_out}, cost ${d.cost_usd:.4f}, "
        f"config {d.config_fingerprint or '?'}, delivery {d.delivery.status}"
    )
    return "\n".join(lines)


def _candidates(d: Decision) -> str:
    chosen = next((c for c in d.candidates if c.chosen), None)
    errors = Counter(c.error for c in d.candidates if c.error)
    text = f"candidates: {len(d.candidates)}"
    if errors:
        text += " (" + ", ".join(f"{n} {quote(e, 60)}" for e, n in errors.items()) + ")"
    if chosen is not None:
        text += f"; #{chosen.index} chosen ({plain(chosen.model, 60)})"
    if d.selection and d.selection.method != "single":
        text += f" by {d.selection.method}"
        if d.selection.reasoning:
            text += f": {quote(d.selection.reasoning, 120)}"
    return text


# -- streamed replies ------------------------------------------------------------------
# What a stream record says, for every surface: the one line of ``explain`` and
# ``show``, and the per-chunk rows of the ``show`` table and the HTML report.


class StreamRow(NamedTuple):
    """One chunk as every table shows it, each value already inert; the fields are the
    columns (:data:`STREAM_COLUMNS` are their headings), so readers go by name."""

    chunk: str
    shown: str  # shown, BLOCKED (the chunk that stopped the stream) or not shown
    chars: str
    model_chars: str
    visible: str  # characters visible once this chunk was shown
    at_ms: str
    output_verdicts: str


STREAM_COLUMNS = tuple(name.replace("_", " ") for name in StreamRow._fields)


def stream_end(s: StreamRecord, *, blocked_by: str | None = None) -> str:
    """How a streamed reply ended (its stop reason), from the record and the decision's
    ``blocked_by``: completed, stopped at a chunk by a guard, broken off, or retracted."""
    if s.stopped_at_chunk is not None:
        chunk = next((c for c in s.chunks if c.index == s.stopped_at_chunk), None)
        why = [v for v in (chunk.verdicts if chunk else []) if v.blocking]
        by = "; ".join(
            f"{quote(v.guard, 40)} {v.outcome.value}"
            + (f": {quote(v.reason, 100)}" if v.reason else "")
            for v in why
        )
        return f"stopped at chunk {s.stopped_at_chunk}" + (f" by {by}" if by else "")
    if s.note:
        return quote(s.note, 160)
    if s.retracted:
        if blocked_by:
            return f"retracted: {quote(blocked_by, 40)} blocked the whole reply after it was shown"
        return "retracted: the shown text was replaced by the final message"
    if not s.chunks:
        return f"nothing shown: blocked by {quote(blocked_by, 40)}" if blocked_by else "no chunks"
    return "completed"


def stream_line(s: StreamRecord, *, blocked_by: str | None = None) -> str:
    """A streamed reply in one line: chunks and updates, time to first visible text,
    characters shown, retracted or not, how it ended, and delivery failures."""
    first = "-" if s.first_visible_ms is None else f"{s.first_visible_ms:.0f} ms"
    last = "" if s.last_visible_ms is None else f", last at {s.last_visible_ms:.0f} ms"
    line = (
        f"streamed: {len(s.chunks)} chunk(s), {s.updates} update(s), first visible text at "
        f"{first}{last}, {s.shown_chars} chars shown, "
        f"{'RETRACTED' if s.retracted else 'not retracted'}; "
        f"ended: {stream_end(s, blocked_by=blocked_by)}"
    )
    if s.final_guards:
        line += f"; judged once at the end: {quote(', '.join(s.final_guards), 80)}"
    if s.delivery_errors:
        errors = "; ".join(quote(e, 100) for e in s.delivery_errors)
        line += f"; {len(s.delivery_errors)} delivery failure(s): {errors}"
    else:
        line += "; no delivery failures"
    return line


def chunk_shown(c: StreamChunk, s: StreamRecord) -> str:
    if c.released:
        return "shown"
    return "BLOCKED" if c.index == s.stopped_at_chunk else "not shown"


def chunk_verdicts(c: StreamChunk) -> str:
    """A chunk's output verdicts: guard and outcome, a score, and why when it did something."""
    parts = []
    for v in c.verdicts:
        text = f"{quote(v.guard, 40)} {outcome_of(v)}"
        if v.score is not None:
            text += f" {v.score:.2f}"
        if v.outcome not in (Outcome.ALLOW, Outcome.SKIPPED) and v.reason:
            text += f" ({quote(v.reason, 100)})"
        parts.append(text)
    return ", ".join(parts) or "-"


def stream_rows(s: StreamRecord) -> list[StreamRow]:
    """One row per chunk."""
    return [
        StreamRow(
            chunk=str(c.index),
            shown=chunk_shown(c, s),
            chars=str(c.chars),
            model_chars=str(c.raw_chars),
            visible=str(c.shown_chars),
            at_ms=f"{c.at_ms:.1f}",
            output_verdicts=chunk_verdicts(c),
        )
        for c in s.chunks
    ]


def chunk_line(c: StreamChunk, s: StreamRecord) -> str:
    """One chunk on one line (the console's ``--explain``)."""
    return (
        f"chunk {c.index}: {chunk_shown(c, s)}, {c.chars} chars ({c.raw_chars} from the model), "
        f"{c.shown_chars} visible at {c.at_ms:.0f} ms; {chunk_verdicts(c)}"
    )
