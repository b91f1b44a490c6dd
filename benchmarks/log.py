"""Decision log: sustained decisions/s written and the latency `record()` adds per message.

Everything is real: a SQLite file in a temporary folder, the in-process
aiosqlite writer with group commit, masking of secrets, the hash chain, the
FTS index. The decisions are realistic (varied text, an input and an output
verdict, one candidate, one model call) and built before the clock starts, so
what is measured is the log alone:

- sustained: ``--concurrency`` conversations each record their share, one
  decision after another, as the bot does;
- added latency: one decision at a time, nothing else running; the time from
  ``record()`` being called to it returning committed (target p50 <= 1 ms),
  and the CPU each costs when every decision is a transaction of its own, as
  at a chat bot's usual rate (``record_cpu_ms``);
- verify: how fast `guardbot verify` walks the chain afterwards.

The log must never be what limits the bot: with ``--bot`` the same run also
measures the whole bot's messages/s (``benchmarks/throughput.py``, history
on) and reports sustained decisions/s against it (target >= 2x). The process
is held to one core, as the bot's throughput target is. The machine's speed
varies by up to 2x over minutes: run it a few times.

Prints a table; with ``--json`` one JSON object as the last line (rates end in
``_per_s``, times in ``_ms``, ratios in ``_ratio``; a target ratio >= 1 meets it).

    python benchmarks/log.py [-n 20000] [--concurrency 200] [--bot] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from middleware.decision_log import DecisionLog  # noqa: E402
from middleware.types import Action, Decision  # noqa: E402
from tests.support.decision_log_support import make_decision  # noqa: E402

BENCHMARKS = str(Path(__file__).resolve().parent)
TARGET_P50_MS = 1.0
TARGET_BOT_MULTIPLE = 2.0  # sustained decisions/s >= 2x the whole bot's messages/s
VOCABULARY = (
    "how do I reverse a list in python what is the capital of france tell me a fun fact about "
    "octopuses summarise the meeting notes from tuesday in three bullets please thanks deploy "
    "the service on friday why does my test fail with a timeout error"
)
WORDS = VOCABULARY.split()


def decision(rng: random.Random, conversation: int) -> Decision:
    """The tests' realistic decision, with varied text and one in ten blocked."""
    return make_decision(
        " ".join(rng.choices(WORDS, k=rng.randint(6, 30))),
        reply=" ".join(rng.choices(WORDS, k=rng.randint(10, 60))),
        action=Action.BLOCKED if rng.random() < 0.1 else Action.REPLIED,
        channel_id=f"C{conversation % 20}",
        thread_id=f"T{conversation}",
        user_id=f"U{conversation}",
    )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(p / 100 * len(ordered))) - 1)]


async def sustained(path: Path, decisions: list[Decision], concurrency: int) -> dict[str, float]:
    log = await DecisionLog.open(path)
    latencies: list[float] = []

    async def conversation(share: list[Decision]) -> None:
        for d in share:
            began = time.perf_counter()
            await log.record(d)
            latencies.append((time.perf_counter() - began) * 1000)

    shares = [decisions[i::concurrency] for i in range(concurrency)]
    cpu0, began = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for share in shares:
            tg.create_task(conversation(share))
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu0  # the event loop and aiosqlite's thread together
    stats = log.writer_stats
    await log.close()
    n = len(decisions)
    return {
        "decisions_per_s": n / elapsed,
        "batches": stats.batches,
        "mean_batch": stats.decisions / max(1, stats.batches),
        "loaded_p50_ms": pct(latencies, 50),
        "loaded_p95_ms": pct(latencies, 95),
        "cpu_ms": cpu / n * 1000,
    }


async def one_at_a_time(path: Path, decisions: list[Decision]) -> dict[str, float]:
    log = await DecisionLog.open(path)
    latencies = []
    cpu0 = time.process_time()
    for d in decisions:
        began = time.perf_counter()
        await log.record(d)
        latencies.append((time.perf_counter() - began) * 1000)
    cpu = time.process_time() - cpu0  # each decision its own transaction, as at chat rates
    began = time.perf_counter()
    report = await log.verify()
    verify_s = time.perf_counter() - began
    assert report.ok, report.message
    await log.close()
    return {
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "mean_ms": statistics.fmean(latencies),
        "verify_per_s": report.checked / verify_s,
        "cpu_ms": cpu / len(decisions) * 1000,
    }


def file_size(path: Path) -> int:
    return sum(
        Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )


async def bot_messages_per_s(folder: str, n: int) -> float:
    """The whole bot's messages/s in this run (throughput.py's measurement, history on)."""
    sys.path.insert(0, BENCHMARKS)
    import throughput  # noqa: PLC0415 (a sibling script, needed only with --bot)

    result = await throughput.run(n, 64, folder, True)
    return float(result["wall_per_s"])


async def main(n: int, concurrency: int, quiet_n: int, bot_n: int) -> dict[str, float]:
    rng = random.Random(7)
    decisions = [decision(rng, i % concurrency) for i in range(n)]
    quiet = [decision(rng, i % 50) for i in range(quiet_n)]
    gc.freeze()  # the prepared inputs are not the log's garbage to collect
    with tempfile.TemporaryDirectory(prefix="guardbot-bench-") as folder:
        load = await sustained(Path(folder, "load.db"), decisions, concurrency)
        size = file_size(Path(folder, "load.db"))
        alone = await one_at_a_time(Path(folder, "load.db"), quiet)
        bot = await bot_messages_per_s(folder, bot_n) if bot_n else None
    result = {
        "decisions": n,
        "concurrency": concurrency,
        "sustained_decisions_per_s": round(load["decisions_per_s"], 1),
        "mean_batch": round(load["mean_batch"], 1),
        "loaded_record_p50_ms": round(load["loaded_p50_ms"], 3),
        "loaded_record_p95_ms": round(load["loaded_p95_ms"], 3),
        "record_p50_ms": round(alone["p50_ms"], 3),
        "record_p95_ms": round(alone["p95_ms"], 3),
        "record_mean_ms": round(alone["mean_ms"], 3),
        "record_cpu_ms": round(alone["cpu_ms"], 4),
        "cpu_per_decision_ms": round(load["cpu_ms"], 4),
        "verify_decisions_per_s": round(alone["verify_per_s"], 1),
        "db_bytes_per_decision": round(size / n),
        "latency_target_ratio": round(TARGET_P50_MS / max(alone["p50_ms"], 1e-9), 3),
    }
    if bot is not None:
        multiple = load["decisions_per_s"] / bot
        result["bot_messages_per_s"] = round(bot, 1)
        result["decisions_per_bot_message_ratio"] = round(multiple, 2)
        result["bot_target_ratio"] = round(multiple / TARGET_BOT_MULTIPLE, 3)
    return result


def show(result: dict[str, float]) -> None:
    table = Table(title="decision log (SQLite, WAL, group commit)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "record_p50_ms": f"<= {TARGET_P50_MS}",
        "decisions_per_bot_message_ratio": f">= {TARGET_BOT_MULTIPLE}",
        "bot_target_ratio": ">= 1",
        "latency_target_ratio": ">= 1",
    }
    for key, value in result.items():
        table.add_row(key, f"{value:,}", targets.get(key, ""))
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="decisions in the sustained run")
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent conversations")
    parser.add_argument("--quiet-n", type=int, default=2_000, help="one-at-a-time decisions")
    parser.add_argument(
        "--bot", type=int, nargs="?", const=3000, default=0, metavar="N",
        help="also measure the whole bot on N messages (default 3000) and compare",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the bot's target
    outcome = asyncio.run(main(args.n, args.concurrency, args.quiet_n, args.bot))
    show(outcome)
    if args.json:
        print(json.dumps(outcome))
