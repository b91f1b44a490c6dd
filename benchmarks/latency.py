"""Latency of allowed and blocked messages against the theoretical limit.

The stub LLM (in its own process) answers generation after GEN ms and an
`llm_judge` input guard after GUARD ms. For allowed messages the floor is
max(GEN, GUARD); for blocked ones it is GUARD (generation is cancelled). The
whole bot path is measured: GuardBot.handle with the SQLite decision log.
Both orders (slow generation, slow guard) are run. Prints a table, and with
``--json`` one JSON object as the last line.

    python benchmarks/latency.py [-n 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stub_bot import GEN_MODEL, bot_config, text_for  # noqa: E402
from bot.app import GuardBot  # noqa: E402
from bot.config.schema import parse_config  # noqa: E402
from bot.serving import tune_gc_for_serving  # noqa: E402
from middleware.types import Action, ChatRequest  # noqa: E402
from tests.stubs.process import fetch_records, stub_process  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(gen_ms: int, guard_ms: int, n: int, folder: str) -> dict[str, float]:
    # The stub runs in its own process (scenario "latency" in tests/stubs/process.py),
    # so its work does not compete with the measured bot for the GIL.
    with stub_process("latency", str(gen_ms / 1000), str(guard_ms / 1000)) as base_url:
        config = parse_config(bot_config(base_url, f"{folder}/g{gen_ms}.db"), "bench")
        bot = await GuardBot.open(config, env={})  # as `guardbot run` opens it ...
        tune_gc_for_serving()  # ... and tunes the collector for serving
        allowed: list[float] = []
        blocked: list[float] = []
        # The same latencies against the calls' own measured times (what the slowest
        # call really took, client included): the share guardbot itself adds.
        allowed_own: list[float] = []
        blocked_own: list[float] = []
        try:
            for i in range(2 * n + 2):
                unsafe = i % 2 == 1
                request = ChatRequest(
                    platform="bench",
                    channel_id="c",
                    thread_id=f"t{i}",
                    user_id="u",
                    text=text_for(i, unsafe),
                )
                started = time.perf_counter()
                decision = await bot.handle(request)
                elapsed = (time.perf_counter() - started) * 1000
                expected = Action.BLOCKED if unsafe else Action.REPLIED
                if decision.action is not expected:
                    raise SystemExit(f"unexpected {decision.action}: {decision.error}")
                if i < 2:
                    continue  # warm-up: connection setup, first-use imports
                judge = next(v.latency_ms for v in decision.verdicts if v.guard == "judge")
                if unsafe:
                    blocked.append(elapsed)
                    blocked_own.append(elapsed / judge)
                else:
                    allowed.append(elapsed)
                    generation = decision.candidates[0].latency_ms
                    allowed_own.append(elapsed / max(judge, generation))
        finally:
            await bot.close()
        records = fetch_records(base_url)
    gen_requests = [r for r in records if r["model"] == GEN_MODEL]
    blocked_gen = [r for r in gen_requests if "BLOCKME" in r["text"]]
    closed = sum(r["outcome"] == "closed_early" for r in blocked_gen)
    floor_allowed = max(gen_ms, guard_ms)
    return {
        "generation_ms": gen_ms,
        "guard_ms": guard_ms,
        "allowed_p50_ratio": statistics.median(allowed) / floor_allowed,
        "allowed_p95_ratio": pct(allowed, 0.95) / floor_allowed,
        "blocked_p50_ratio": statistics.median(blocked) / guard_ms,
        "blocked_p95_ratio": pct(blocked, 0.95) / guard_ms,
        "allowed_vs_own_p50_ratio": statistics.median(allowed_own),
        "allowed_vs_own_p95_ratio": pct(allowed_own, 0.95),
        "blocked_vs_own_p50_ratio": statistics.median(blocked_own),
        "blocked_vs_own_p95_ratio": pct(blocked_own, 0.95),
        "blocked_generation_closed_early_ratio": closed / max(1, len(blocked_gen)),
        "allowed_p50_ms": statistics.median(allowed),
        "blocked_p50_ms": statistics.median(blocked),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="messages of each kind per scenario")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [await measure(800, 300, args.n, folder), await measure(300, 800, args.n, folder)]
    print("against the configured stub delays (the theoretical floor):")
    print(
        f"{'gen ms':>7} {'guard ms':>8} | {'allowed p50':>11} {'p95':>6} | "
        f"{'blocked p50':>11} {'p95':>6} | gen closed early"
    )
    for r in rows:
        print(
            f"{r['generation_ms']:>7} {r['guard_ms']:>8} | {r['allowed_p50_ratio']:>11.3f} "
            f"{r['allowed_p95_ratio']:>6.3f} | {r['blocked_p50_ratio']:>11.3f} "
            f"{r['blocked_p95_ratio']:>6.3f} | {r['blocked_generation_closed_early_ratio']:.0%}"
        )
    print("against the calls' own measured times (the overhead guardbot adds):")
    for r in rows:
        print(
            f"{r['generation_ms']:>7} {r['guard_ms']:>8} | {r['allowed_vs_own_p50_ratio']:>11.3f} "
            f"{r['allowed_vs_own_p95_ratio']:>6.3f} | {r['blocked_vs_own_p50_ratio']:>11.3f} "
            f"{r['blocked_vs_own_p95_ratio']:>6.3f} |"
        )
    print(
        "ratios: latency / max(generation, guard) when allowed, latency / guard when blocked;"
        " target <= 1.05"
    )
    worst = {
        "allowed_p95_ratio": max(r["allowed_p95_ratio"] for r in rows),
        "blocked_p95_ratio": max(r["blocked_p95_ratio"] for r in rows),
    }
    if args.json:
        print(json.dumps({"scenarios": rows, **worst, "messages_per_kind": args.n}))


if __name__ == "__main__":
    asyncio.run(main())
