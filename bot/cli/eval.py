"""`guardbot eval FILE.jsonl`: measure the configured guards on an admin's own labelled data.

Shipped accuracy numbers come from public data; what matters to a deployment
is its own traffic. This command runs every configured guard on every item
through the same screening function as the pipeline (``every_guard=True``,
so each guard's verdict is known, not only the first block) and prints
precision, recall and benign false-positive rate per guard and for the
policy as a whole. With ``--sweep`` it also shows how those move with each
guard's threshold, swept over the scores the guard gave, so a threshold can
be picked from data (and then set from chat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.cli.common import load_config_from_args, positive_int, print_json
from bot.config.policies import PolicyBuilder
from bot.config.providers import ModelProvider
from middleware.guards.classifier import close_sessions
from middleware.guards.guard import GuardContext
from middleware.guards.llm_guard import offline_notice
from middleware.pipeline.policy import ConfiguredGuard
from middleware.pipeline.screening import screen
from middleware.types import ChatRequest, Outcome, Stage, Verdict

SAFE_LABELS = frozenset({"safe", "benign"})
UNSAFE_LABEL = "unsafe"
DETECTED = frozenset({Outcome.BLOCK, Outcome.FLAG, Outcome.REDACT})

DESCRIPTION = """\
Run the configured guards on a labelled JSON Lines file and print precision,
recall and benign false-positive rate (FPR) per guard and for all guards together.

Each line is a JSON object:
  text   (required) the message
  label  (required) "safe" (or "benign"): no guard should fire;
         "unsafe": some guard should fire, and every guard is scored against it;
         a guard's name or kind (e.g. "pii", "prompt_injection"): that guard should
         fire; the item counts as unsafe overall and as a negative for other guards.
         Other labels count as unsafe overall only (listed in the report).
  stage  (optional) "input" (default) or "output"; only guards of that stage run.

A guard "fires" when its verdict is block, flag or redact, or when it errs with
on_error = "block". Precision = TP / fired; recall = TP / positives; benign FPR =
fired on safe items / safe items. --sweep assumes a guard fires when its score
>= threshold and recomputes the three at each score the guard gave (errors keep
their on_error effect). Exit status: 0 done, 2 bad input or configuration."""


class EvalInputError(Exception):
    """The evaluation file cannot be used; the message names the line."""


@dataclass(frozen=True, slots=True)
class Item:
    line: int
    text: str
    label: str
    stage: Stage


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What one guard did to one item."""

    fired: bool
    score: float | None
    error: bool
    error_fires: bool  # an error that blocks (on_error = "block")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure the configured guards on a labelled JSONL file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="JSON Lines: text, label, optional stage")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    p.add_argument("--sweep", action="store_true", help="metrics at each observed score")
    p.add_argument("--points", type=positive_int, default=20, help="sweep rows per guard")
    p.add_argument("--channel", default="", help="channel id (guards limited to channels)")
    p.add_argument(
        "--concurrency", type=positive_int, default=8, help="items screened at once (default 8)"
    )
    p.set_defaults(handler=_eval)


def load_items(path: Path) -> list[Item]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    items = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise EvalInputError(f"{where}: not UTF-8") from None
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(
                f"{where}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise EvalInputError(f"{where}: expected a JSON object with text and label")
        for key in ("text", "label"):
            if key not in data:
                raise EvalInputError(f'{where}: missing field "{key}"')
            if not isinstance(data[key], str) or not data[key].strip():
                raise EvalInputError(f'{where}: "{key}" must be a non-empty string')
        stage = data.get("stage", "input")
        if stage not in ("input", "output"):
            raise EvalInputError(f'{where}: "stage" must be "input" or "output", not {stage!r}')
        items.append(Item(number, data["text"], data["label"].strip(), Stage(stage)))
    if not items:
        raise EvalInputError(f"{path}: no items")
    return items


def _canon(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _positive(item: Item, g: ConfiguredGuard) -> bool:
    label = _canon(item.label)
    return label == UNSAFE_LABEL or label in (_canon(g.config.name), _canon(g.config.kind))


def _safe(item: Item) -> bool:
    return _canon(item.label) in SAFE_LABELS


def _outcomes(v: Verdict) -> Outcomes:
    error = v.outcome is Outcome.ERROR
    return Outcomes(v.outcome in DETECTED or v.blocking, v.score, error, error and v.blocking)


async def _screen_items(
    guards: Sequence[ConfiguredGuard], items: Sequence[Item], channel: str, concurrency: int
) -> list[dict[str, Outcomes]]:
    """Per item, what each guard that applies to its stage did."""
    results: list[dict[str, Outcomes]] = [{} for _ in items]
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, item: Item) -> None:
        applying = [g for g in guards if g.config.applies(item.stage, channel)]
        request = ChatRequest(platform="eval", channel_id=channel, text=item.text)
        async with limit:
            screening = await screen(
                applying, item.text, GuardContext(item.stage, request), every_guard=True
            )
        for v in screening.verdicts:  # a redaction re-check may repeat a guard: keep the first
            results[index].setdefault(v.guard, _outcomes(v))

    async with asyncio.TaskGroup() as tg:
        for index, item in enumerate(items):
            tg.create_task(one(index, item))
    return results


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _metrics(rows: Iterable[tuple[bool, bool, bool]]) -> dict[str, Any]:
    """rows: (positive, safe, fired) per item."""
    tp = fp = fn = safe = safe_fired = items = 0
    for positive, is_safe, fired in rows:
        items += 1
        tp += positive and fired
        fp += fired and not positive
        fn += positive and not fired
        safe += is_safe
        safe_fired += is_safe and fired
    return {
        "items": items,
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "benign_fpr": _ratio(safe_fired, safe),
    }


def _sweep(
    items: Sequence[Item], g: ConfiguredGuard, seen: list[tuple[Item, Outcomes]], points: int
) -> list[dict[str, Any]]:
    scores = sorted({o.score for _, o in seen if o.score is not None and not o.error})
    if len(scores) > points:  # evenly spaced over the observed scores, both ends kept
        scores = sorted(
            {scores[round(i * (len(scores) - 1) / (points - 1))] for i in range(points)}
        )
    rows = []
    for t in scores:
        fired = (
            (_positive(it, g), _safe(it), o.error_fires or (not o.error and (o.score or 0) >= t))
            for it, o in seen
        )
        rows.append({"threshold": t, **_metrics(fired)})
    return rows


def evaluate(
    guards: Sequence[ConfiguredGuard],
    items: Sequence[Item],
    results: Sequence[dict[str, Outcomes]],
    *,
    sweep_points: int | None,
) -> dict[str, Any]:
    labels = Counter(_canon(it.label) for it in items)
    known = {_canon(n) for g in guards for n in (g.config.name, g.config.kind)}
    unmatched = {k: n for k, n in labels.items() if k not in known | SAFE_LABELS | {UNSAFE_LABEL}}
    report: dict[str, Any] = {
        "items": len(items),
        "safe": sum(_safe(it) for it in items),
        "unsafe": sum(not _safe(it) for it in items),
        "labels_matching_no_guard": unmatched,
        "guards": {},
        "overall": _metrics(
            (not _safe(it), _safe(it), any(o.fired for o in r.values()))
            for it, r in zip(items, results, strict=True)
        ),
    }
    if sweep_points is not None:
        report["sweep"] = {}
    for g in guards:
        seen = [(it, r[g.config.name]) for it, r in zip(items, results, strict=True)
                if g.config.name in r]  # fmt: skip
        row = _metrics((_positive(it, g), _safe(it), o.fired) for it, o in seen)
        row |= {"kind": g.config.kind, "threshold": g.config.threshold}
        row["errors"] = sum(o.error for _, o in seen)
        report["guards"][g.config.name] = row
        if sweep_points is not None:
            report["sweep"][g.config.name] = _sweep(items, g, seen, sweep_points)
    report["results"] = [
        {
            "line": it.line,
            "label": it.label,
            "stage": it.stage.value,
            "fired": [name for name, o in r.items() if o.fired],
            "scores": {name: o.score for name, o in r.items()},
        }
        for it, r in zip(items, results, strict=True)
    ]
    return report


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_report(path: Path, report: dict[str, Any]) -> None:
    print(f"{path}: {report['items']} items ({report['safe']} safe, {report['unsafe']} unsafe)")
    if report["labels_matching_no_guard"]:
        listed = ", ".join(
            f"{k} ({n})" for k, n in sorted(report["labels_matching_no_guard"].items())
        )
        print(f"labels matching no guard, counted as unsafe overall only: {listed}")
    head = f"{'items':>6}{'pos':>6}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}"
    print(f"{'guard':<20}{'kind':<18}{head}{'benign FPR':>12}{'errors':>8}")
    for name, r in report["guards"].items():
        print(
            f"{name[:19]:<20}{r['kind'][:17]:<18}{r['items']:>6}{r['positives']:>6}{r['tp']:>6}"
            f"{r['fp']:>6}{r['fn']:>6}{_cell(r['precision']):>11}{_cell(r['recall']):>8}"
            f"{_cell(r['benign_fpr']):>12}{r['errors']:>8}"
        )
    o = report["overall"]
    print(
        f"{'overall (any guard)':<38}{o['items']:>6}{o['positives']:>6}{o['tp']:>6}{o['fp']:>6}"
        f"{o['fn']:>6}{_cell(o['precision']):>11}{_cell(o['recall']):>8}{_cell(o['benign_fpr']):>12}"
    )
    for name, rows in report.get("sweep", {}).items():
        current = report["guards"][name]["threshold"]
        shown = "unset" if current is None else f"{current:g}"
        print(f"\nsweep {name} (configured threshold {shown}; fires when score >= threshold)")
        print(
            f"  {'threshold':>9}{'precision':>11}{'recall':>8}{'benign FPR':>12}{'TP':>6}{'FP':>6}"
        )
        for row in rows:
            print(
                f"  {row['threshold']:>9.4f}{_cell(row['precision']):>11}{_cell(row['recall']):>8}"
                f"{_cell(row['benign_fpr']):>12}{row['tp']:>6}{row['fp']:>6}"
            )
        if not rows:
            print("  (no scores: the guard never answered with one)")


async def _run(args: argparse.Namespace) -> int:
    items = load_items(args.file)  # bad input fails before any guard is built
    config = load_config_from_args(args)
    models = ModelProvider(config.llm)
    try:
        guards = [g for g in PolicyBuilder(models).guards(config) if g.config.enabled]
        if not guards:
            raise EvalInputError("no enabled guards in the configuration")
        skipped = offline_notice((g.config.name, g.guard) for g in guards)
        for notice in (models.notice(), skipped):
            if notice:
                print(f"notice: {notice}", file=sys.stderr)
        results = await _screen_items(guards, items, args.channel, args.concurrency)
    finally:
        await close_sessions()
        await models.close()
    report = evaluate(guards, items, results, sweep_points=args.points if args.sweep else None)
    if args.json:
        print_json({"file": str(args.file), **report})
    else:
        _print_report(args.file, report)
    return 0


def _eval(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except EvalInputError as exc:
        print(f"guardbot eval: {exc}", file=sys.stderr)
        return 2
