"""Accuracy and latency of the offline guards on the labelled evaluation set.

Every offline guard is built from the shipped ``config.toml`` (its
thresholds, as deployed) and run on every text of
``tests/data/guard_eval.jsonl``. A guard's own category is what it should
catch (profanity -> toxic, pii -> pii, secrets -> secrets, prompt_injection ->
injection, blocklist -> blocklist); for each guard we report precision and
recall on that category, recall on the obfuscated items, and how many benign
texts it blocked. The blocklist is site-specific, so the shipped list is
extended with the evaluation's own code names (below). ``harm`` items (threats,
weapons) are the LLM guards' job; how many of them the offline guards catch
anyway is reported, not targeted. Items with ``"batch": 2`` were written
after the detectors had been tuned on the first batch, to see how they
generalise (before the fixes they prompted, injection recall on them was 0.57).

Latency is the median time of one ``check`` per message (each guard, and all
of them one after another as the bot runs them, sharing the normalised text
within a message), over several passes of the whole set.

Targets: precision >= 0.95, recall >= 0.90, benign false positives <= 2%,
each guard <= 5 ms median, all together <= 10 ms. Prints a table; with
``--json`` the last line is one JSON object (``_ratio``, ``_ms``, ``_per_s``).

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
OWN_CATEGORY = {
    "profanity": "toxic",
    "pii": "pii",
    "secrets": "secrets",
    "prompt_injection": "injection",
    "blocklist": "blocklist",
}
OFFLINE_KINDS = (*OWN_CATEGORY, "max_length")
# The evaluation's site-specific blocklist: internal code names and ticket ids.
EVAL_BLOCK_WORDS = ["project bluebird", "nightjar"]
EVAL_BLOCK_PATTERNS = [r"\bsec[-_ ]?\d{4}\b"]


def load_items(path: Path = EVAL) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
        hits = fired[kind]
        tp = sum(h for h, it in zip(hits, items, strict=True) if it["category"] == own)
        fp = sum(h for h, it in zip(hits, items, strict=True) if it["category"] != own)
        positives = [h for h, it in zip(hits, items, strict=True) if it["category"] == own]
        obf = [h for h, it in zip(hits, items, strict=True)
               if it["category"] == own and it.get("obfuscated")]  # fmt: skip
        benign = [h for h, it in zip(hits, items, strict=True) if it["category"] == "benign"]
        rows[kind] = {
            "items": len(positives),
            "precision_ratio": tp / (tp + fp) if tp + fp else 1.0,
            "recall_ratio": tp / len(positives) if positives else 1.0,
            "obfuscated_recall_ratio": sum(obf) / len(obf) if obf else 1.0,
            "benign_fp": sum(benign),
            "misses": [
                it["text"]
                for h, it in zip(hits, items, strict=True)
                if it["category"] == own and not h
            ][:5],  # fmt: skip
            "false_positives": [
                it["text"] for h, it in zip(hits, items, strict=True) if h and it["category"] != own
            ][:5],
        }
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
        "all_median_ms": statistics.median(together),
        "all_p95_ms": sorted(together)[int(0.95 * (len(together) - 1))],
        "messages_per_s": 1000 / statistics.mean(together),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5, help="latency passes over the set")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="list misses and false positives")
    args = parser.parse_args()
    items = load_items()
    started = time.perf_counter()
    guards = offline_guards()
    build_ms = (time.perf_counter() - started) * 1000
    acc = await accuracy(guards, items)
    lat = await latency(guards, items, args.passes)

    print(f"evaluation set: {len(items)} items ({acc['benign_items']} benign); guards built in "
          f"{build_ms:.0f} ms (profanity model load included)")  # fmt: skip
    print(f"{'guard':<18}{'items':>6}{'precision':>10}{'recall':>8}{'obfusc.':>8}"
          f"{'benign FP':>10}{'median ms':>10}{'p95 ms':>8}")  # fmt: skip
    for kind, _ in guards:
        r = acc["guards"].get(kind)
        cells = (
            f"{r['items']:>6}{r['precision_ratio']:>10.3f}{r['recall_ratio']:>8.3f}"
            f"{r['obfuscated_recall_ratio']:>8.3f}{r['benign_fp']:>10}"
            if r
            else f"{'-':>6}{'-':>10}{'-':>8}{'-':>8}{'-':>10}"
        )
        print(f"{kind:<18}{cells}{lat['median_ms'][kind]:>10.4f}{lat['p95_ms'][kind]:>8.4f}")
        if args.verbose and r:
            for text in r["misses"]:
                print(f"    miss: {text!r}")
            for text in r["false_positives"]:
                print(f"    false positive: {text!r}")
    print(f"{'all offline':<18}{'':>42}{lat['all_median_ms']:>10.4f}{lat['all_p95_ms']:>8.4f}")
    print(f"benign false-positive rate (any guard): {acc['benign_fp_ratio']:.3f}   "
          f"harm items caught offline (not a target): {acc['harm_caught_ratio']:.2f}")  # fmt: skip
    print("targets: precision >= 0.95, recall >= 0.90, benign FP <= 0.02, "
          "each guard <= 5 ms median, all <= 10 ms")  # fmt: skip
    if args.json:
        out: dict[str, Any] = {
            "items": len(items),
            "benign_fp_ratio": acc["benign_fp_ratio"],
            "harm_caught_ratio": acc["harm_caught_ratio"],
            "all_offline_median_ms": lat["all_median_ms"],
            "all_offline_p95_ms": lat["all_p95_ms"],
            "offline_messages_per_s": lat["messages_per_s"],
            "build_ms": build_ms,
        }
        for kind, r in acc["guards"].items():
            out[f"{kind}_precision_ratio"] = r["precision_ratio"]
            out[f"{kind}_recall_ratio"] = r["recall_ratio"]
            out[f"{kind}_obfuscated_recall_ratio"] = r["obfuscated_recall_ratio"]
        for kind, ms in lat["median_ms"].items():
            out[f"{kind}_median_ms"] = ms
        out["min_precision_ratio"] = min(r["precision_ratio"] for r in acc["guards"].values())
        out["min_recall_ratio"] = min(r["recall_ratio"] for r in acc["guards"].values())
        out["max_guard_median_ms"] = max(lat["median_ms"].values())
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
