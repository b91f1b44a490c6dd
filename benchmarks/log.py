"""Decision log: sustained decisions/s written and the latency `record()` adds per message.

Everything is real: a SQLite file in a temporary folder, the writer process
with group commit, masking of secrets, the hash chain, the FTS index. The
decisions are realistic (varied text, an input and an output verdict, one
candidate, one model call) and built before the clock starts, so what is
measured is the log alone:

- sustained: ``--concurrency`` conversations each record their share, one
  decision after another, as the bot does (target >= 10,000 decisions/s);
- added latency: one decision at a time, nothing else running; the time from
  ``record()`` being called to it returning committed (target p50 <= 2 ms);
- verify: how fast `guardbot verify` walks the chain afterwards.

It also reports the CPU each decision costs in the bot's process (masking,
hashing, building rows, sending) and in the writer process (SQLite, WAL
checkpoints). The two run side by side, so on this 2-core machine the rate
is bound by the larger of the two, and by both together once the cores are
full. The machine's speed varies by up to 2x over minutes: run
it a few times.

Prints a table; with ``--json`` one JSON object as the last line (rates end in
``_per_s``, times in ``_ms``, ratios in ``_ratio``; a target ratio >= 1 meets it).

    python benchmarks/log.py [-n 20000] [--concurrency 200] [--json]
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

TARGET_PER_S = 10_000
TARGET_P50_MS = 2.0
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


def writer_cpu_s(log: DecisionLog) -> float:
    """CPU time of the log's writer process so far (0 where /proc cannot tell)."""
    pid = log._writer.pid if log._writer else None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def sustained(path: Path, decisions: list[Decision], concurrency: int) -> dict[str, float]:
    log = await DecisionLog.open(path)
    latencies: list[float] = []

    async def conversation(share: list[Decision]) -> None:
        for d in share:
            began = time.perf_counter()
            await log.record(d)
            latencies.append((time.perf_counter() - began) * 1000)

    shares = [decisions[i::concurrency] for i in range(concurrency)]
    writer0, caller0 = writer_cpu_s(log), time.thread_time()
    began = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for share in shares:
            tg.create_task(conversation(share))
    elapsed = time.perf_counter() - began
    writer, caller = writer_cpu_s(log) - writer0, time.thread_time() - caller0
    stats = log.writer_stats
    await log.close()
    n = len(decisions)
    return {
        "decisions_per_s": n / elapsed,
        "batches": stats.batches,
        "mean_batch": stats.decisions / max(1, stats.batches),
        "loaded_p50_ms": pct(latencies, 50),
        "loaded_p95_ms": pct(latencies, 95),
        "caller_cpu_ms": caller / n * 1000,
        "writer_cpu_ms": writer / n * 1000,
    }


async def one_at_a_time(path: Path, decisions: list[Decision]) -> dict[str, float]:
    log = await DecisionLog.open(path)
    latencies = []
    for d in decisions:
        began = time.perf_counter()
        await log.record(d)
        latencies.append((time.perf_counter() - began) * 1000)
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
    }


def file_size(path: Path) -> int:
    return sum(
        Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )


async def main(n: int, concurrency: int, quiet_n: int) -> dict[str, float]:
    rng = random.Random(7)
    decisions = [decision(rng, i % concurrency) for i in range(n)]
    quiet = [decision(rng, i % 50) for i in range(quiet_n)]
    gc.freeze()  # the prepared inputs are not the log's garbage to collect
    with tempfile.TemporaryDirectory(prefix="guardbot-bench-") as folder:
        load = await sustained(Path(folder, "load.db"), decisions, concurrency)
        size = file_size(Path(folder, "load.db"))
        alone = await one_at_a_time(Path(folder, "load.db"), quiet)
    return {
        "decisions": n,
        "concurrency": concurrency,
        "sustained_decisions_per_s": round(load["decisions_per_s"], 1),
        "mean_batch": round(load["mean_batch"], 1),
        "loaded_record_p50_ms": round(load["loaded_p50_ms"], 3),
        "loaded_record_p95_ms": round(load["loaded_p95_ms"], 3),
        "record_p50_ms": round(alone["p50_ms"], 3),
        "record_p95_ms": round(alone["p95_ms"], 3),
        "record_mean_ms": round(alone["mean_ms"], 3),
        "bot_cpu_per_decision_ms": round(load["caller_cpu_ms"], 4),
        "writer_process_cpu_per_decision_ms": round(load["writer_cpu_ms"], 4),
        "verify_decisions_per_s": round(alone["verify_per_s"], 1),
        "db_bytes_per_decision": round(size / n),
        "throughput_target_ratio": round(load["decisions_per_s"] / TARGET_PER_S, 3),
        "latency_target_ratio": round(TARGET_P50_MS / max(alone["p50_ms"], 1e-9), 3),
    }


def show(result: dict[str, float]) -> None:
    table = Table(title="decision log (SQLite, WAL, group commit)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "sustained_decisions_per_s": f">= {TARGET_PER_S:,}",
        "record_p50_ms": f"<= {TARGET_P50_MS}",
        "throughput_target_ratio": ">= 1",
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
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.n, args.concurrency, args.quiet_n))
    show(outcome)
    if args.json:
        print(json.dumps(outcome))
