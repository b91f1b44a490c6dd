"""Accuracy and latency of the offline guards, on the tuned-on and the held-out sources.

Every offline guard is built from the shipped ``config.toml`` (its
thresholds, as deployed) and run on every text of ``tests/data/guard_eval.jsonl``
(the first 264 items, a tuned-on source) and ``benchmarks/guard_data/eval.jsonl``
(public and own sources, each marked ``tuned`` or ``heldout``: see
``benchmarks/guard_data/SOURCES.md``). Every number is given for both parts;
the held-out part is the honest one. A guard's own category is what it should
catch (profanity -> toxic, pii -> pii, secrets -> secrets, prompt_injection ->
injection, blocklist -> blocklist).

Counting rule, per guard: **recall** = its own-category items it blocked / its
own-category items; **benign FPR** = benign items it blocked / benign items;
**precision** = true positives / (true positives + benign items blocked), i.e.
over its own category and benign items only. An item labelled for *another*
unsafe category (profanity on a jailbreak that swears, pii on a phishing
script) is neither a false nor a true positive: blocking it is right for the
bot, just not this guard's job. Such firings are listed per category in the
last column, as information. Toxic items from word lists (``"form": "term"``:
bare terms, or a term after a fixed prefix) are reported in a separate
``profanity (word lists)`` row, apart from the comments; recall on obfuscated
items is in the JSON. The blocklist is site-specific, so the shipped list is
extended with the evaluation's own code names (below). ``harm`` items (threats,
weapons) are the LLM guards' job; how many of them the offline guards catch
anyway is reported, not targeted. Items with ``"batch": 2`` were written
after the detectors had been tuned on the first batch, to see how they
generalise (before the fixes they prompted, injection recall on them was 0.57).

Latency is the median time of one ``check`` per message (each guard, and all
of them one after another as the bot runs them, sharing the normalised text
within a message), over several passes of the whole set.

Goals (held out): injection recall >= 0.90 and profanity recall >= 0.85 at benign
FPR <= 1 %; pii, secrets recall >= 0.95; all offline guards together < 1 ms median.
Prints a table; with ``--json`` the last line is one JSON object (``_ratio``, ``_ms``,
``_per_s``).

    python benchmarks/guards.py [--passes 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config.schema import load_config  # noqa: E402
from middleware.guards.guard import Guard, GuardContext  # noqa: E402
from middleware.guards.normalize import forms  # noqa: E402
from middleware.guards.registry import build_guard  # noqa: E402
from middleware.llm.echo import EchoModel  # noqa: E402
from middleware.types import ChatRequest, Outcome, Stage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "tests" / "data" / "guard_eval.jsonl"
PUBLIC = REPO / "benchmarks" / "guard_data" / "eval.jsonl"
PARTS = ("tuned", "heldout")
OWN_CATEGORY = {
    "profanity": "toxic",
    "pii": "pii",
    "secrets": "secrets",
    "prompt_injection": "injection",
    "blocklist": "blocklist",
}
OFFLINE_KINDS = (*OWN_CATEGORY, "max_length")
# Word-list items (``"form": "term"``: bare terms, or a term after a fixed prefix) are
# reported in their own row: they measure vocabulary coverage, not realistic comments.
TERMS_ROW = "profanity (word lists)"
# The evaluation's site-specific blocklist: internal code names and ticket ids.
EVAL_BLOCK_WORDS = ["project bluebird", "nightjar"]
EVAL_BLOCK_PATTERNS = [r"\bsec[-_ ]?\d{4}\b"]


def load_items(path: Path = EVAL) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def load_parts() -> dict[str, list[dict[str, Any]]]:
    """Both parts: the original set is a tuned-on source; the rest says where it belongs."""
    items = [{**it, "part": "tuned", "source": "guard_eval_v1"} for it in load_items(EVAL)]
    items += load_items(PUBLIC)
    return {part: [it for it in items if it["part"] == part] for part in PARTS}


def offline_guards() -> list[tuple[str, Guard]]:
    """(kind, guard) for every enabled offline guard in the shipped config.toml."""
    config = load_config(REPO / "config.toml")
    guards: list[tuple[str, Guard]] = []
    for cfg in config.guards:
        kind = getattr(cfg, "kind", "")
        if kind not in OFFLINE_KINDS or not cfg.enabled:
            continue
        if kind == "blocklist":
            cfg = cfg.model_copy(
                update={
                    "words": [*cfg.words, *EVAL_BLOCK_WORDS],  # type: ignore[attr-defined]
                    "patterns": [*cfg.patterns, *EVAL_BLOCK_PATTERNS],  # type: ignore[attr-defined]
                }
            )
        guards.append((kind, build_guard(cfg, lambda **_: EchoModel())))
    return guards


def _ctx(text: str) -> GuardContext:
    return GuardContext(Stage.INPUT, ChatRequest(platform="bench", text=text))


def _row(
    hits: list[bool], items: list[dict[str, Any]], own: str, form: str | None
) -> dict[str, Any]:
    """One guard's numbers under the counting rule in the module docstring."""
    pairs = list(zip(hits, items, strict=True))
    mine = [(h, it) for h, it in pairs if it["category"] == own and it.get("form") == form]
    benign = [h for h, it in pairs if it["category"] == "benign"]
    tp, fp = sum(h for h, _ in mine), sum(benign)
    obf = [h for h, it in mine if it.get("obfuscated")]
    cross: dict[str, int] = {}
    for h, it in pairs:
        if h and it["category"] not in (own, "benign"):
            cross[it["category"]] = cross.get(it["category"], 0) + 1
    return {
        "items": len(mine),
        "precision_ratio": tp / (tp + fp) if tp + fp else 1.0,
        "recall_ratio": tp / len(mine) if mine else 1.0,
        "obfuscated_recall_ratio": sum(obf) / len(obf) if obf else 1.0,
        "benign_fp": fp,
        "benign_fp_ratio": fp / len(benign) if benign else 0.0,
        "cross": cross,
        "misses": [it["text"] for h, it in mine if not h][:8],
        "false_positives": [it["text"] for h, it in pairs if h and it["category"] == "benign"][:8],
    }


async def accuracy(guards: list[tuple[str, Guard]], items: list[dict[str, Any]]) -> dict[str, Any]:
    fired: dict[str, list[bool]] = {}
    for kind, guard in guards:
        fired[kind] = [
            (await guard.check(it["text"], _ctx(it["text"]))).outcome is Outcome.BLOCK
            for it in items
        ]
    rows: dict[str, Any] = {}
    for kind, own in OWN_CATEGORY.items():
        if kind not in fired:
            continue
        rows[kind] = _row(fired[kind], items, own, None)
        if kind == "profanity" and any(it.get("form") == "term" for it in items):
            # the word lists' bare terms, apart from the comments
            rows[TERMS_ROW] = _row(fired[kind], items, own, "term")
    any_fired = [any(fired[k][i] for k in fired) for i in range(len(items))]
    benign = [f for f, it in zip(any_fired, items, strict=True) if it["category"] == "benign"]
    harm = [f for f, it in zip(any_fired, items, strict=True) if it["category"] == "harm"]
    return {
        "guards": rows,
        "benign_items": len(benign),
        "benign_fp_ratio": sum(benign) / len(benign) if benign else 0.0,
        "harm_caught_ratio": sum(harm) / len(harm) if harm else 0.0,
    }


async def latency(
    guards: list[tuple[str, Guard]], items: list[dict[str, Any]], passes: int
) -> dict[str, Any]:
    per_guard: dict[str, list[float]] = {kind: [] for kind, _ in guards}
    together: list[float] = []
    contexts = [(it["text"], _ctx(it["text"])) for it in items]
    for text, ctx in contexts:  # warm-up: first calls pay for caches, not for screening
        for _, guard in guards:
            await guard.check(text, ctx)
    for _ in range(passes):
        for text, ctx in contexts:
            forms.cache_clear()  # a new message: nothing normalised yet
            total = 0.0
            for kind, guard in guards:
                started = time.perf_counter()
                await guard.check(text, ctx)
                elapsed = (time.perf_counter() - started) * 1000
                per_guard[kind].append(elapsed)
                total += elapsed
            together.append(total)
    return {
        "median_ms": {k: statistics.median(v) for k, v in per_guard.items()},
        "p95_ms": {k: sorted(v)[int(0.95 * (len(v) - 1))] for k, v in per_guard.items()},
        "p99_ms": {k: sorted(v)[int(0.99 * (len(v) - 1))] for k, v in per_guard.items()},
        "all_median_ms": statistics.median(together),
        "all_p95_ms": sorted(together)[int(0.95 * (len(together) - 1))],
        "all_p99_ms": sorted(together)[int(0.99 * (len(together) - 1))],
        "messages_per_s": 1000 / statistics.mean(together),
    }


def _print_part(part: str, items: list[dict[str, Any]], acc: dict[str, Any],
                lat: dict[str, Any], verbose: bool) -> None:  # fmt: skip
    sources = len({it.get("source") for it in items})
    print(f"\n{part}: {len(items)} items from {sources} sources ({acc['benign_items']} benign)")
    print(f"{'guard':<24}{'items':>6}{'precision':>10}{'recall':>8}{'benign FPR':>11}"
          f"{'median ms':>10}{'p99 ms':>8}  other unsafe categories it fired on")  # fmt: skip
    for kind in [*lat["median_ms"], TERMS_ROW]:
        r = acc["guards"].get(kind)
        if kind == TERMS_ROW and (r is None or not r["items"]):
            continue
        cells = (
            f"{r['items']:>6}{r['precision_ratio']:>10.3f}{r['recall_ratio']:>8.3f}"
            f"{r['benign_fp_ratio']:>11.4f}"
            if r
            else f"{'-':>6}{'-':>10}{'-':>8}{'-':>11}"
        )
        timing = (
            f"{lat['median_ms'][kind]:>10.4f}{lat['p99_ms'][kind]:>8.3f}"
            if kind in lat["median_ms"]
            else f"{'':>18}"
        )
        cross = ", ".join(f"{c} {n}" for c, n in sorted(r["cross"].items())) if r else ""
        print(f"{kind:<24}{cells}{timing}  {cross}")
        if verbose and r:
            for text in r["misses"]:
                print(f"    miss: {text[:160]!r}")
            for text in r["false_positives"]:
                print(f"    benign blocked: {text[:160]!r}")
    print(f"{'all offline':<24}{'':>35}{lat['all_median_ms']:>10.4f}{lat['all_p99_ms']:>8.3f}")
    print(f"benign false-positive rate (any guard): {acc['benign_fp_ratio']:.4f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3, help="latency passes over the set")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="list misses and false positives")
    args = parser.parse_args()
    parts = load_parts()
    started = time.perf_counter()
    guards = offline_guards()
    build_ms = (time.perf_counter() - started) * 1000
    print(f"guards built in {build_ms:.0f} ms (profanity model load included)")
    out: dict[str, Any] = {"build_ms": build_ms}
    for part, items in parts.items():
        acc = await accuracy(guards, items)
        lat = await latency(guards, items, args.passes)
        _print_part(part, items, acc, lat, args.verbose)
        out[f"{part}_items"] = len(items)
        out[f"{part}_benign_fp_ratio"] = acc["benign_fp_ratio"]
        out[f"{part}_all_offline_median_ms"] = lat["all_median_ms"]
        out[f"{part}_all_offline_p99_ms"] = lat["all_p99_ms"]
        for name, r in acc["guards"].items():
            kind = name.replace(" (word lists)", "_wordlists")
            out[f"{part}_{kind}_items"] = r["items"]
            out[f"{part}_{kind}_precision_ratio"] = r["precision_ratio"]
            out[f"{part}_{kind}_recall_ratio"] = r["recall_ratio"]
            out[f"{part}_{kind}_benign_fp_ratio"] = r["benign_fp_ratio"]
            out[f"{part}_{kind}_obfuscated_recall_ratio"] = r["obfuscated_recall_ratio"]
        for kind, ms in lat["median_ms"].items():
            out[f"{part}_{kind}_median_ms"] = ms
            out[f"{part}_{kind}_p99_ms"] = lat["p99_ms"][kind]
    print("\ngoals (held out): injection recall >= 0.90 at benign FPR <= 0.01; profanity "
          "recall >= 0.85 at FPR <= 0.01; pii, secrets >= 0.95; all offline < 1 ms "
          "median")  # fmt: skip
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
