"""Middleware CPU cost: messages per second on one core with a zero-latency model.

Everything but the network is real: GuardBot.handle with the shipped offline
guards (from config.toml), the pipeline, and the SQLite decision log with
group commit. The model answers instantly, so what is measured is guardbot's
own overhead. Target: >= 2,000 messages/s. Prints a table, and with
``--json`` one JSON object as the last line.

    python benchmarks/throughput.py [-n 5000] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import GuardBot  # noqa: E402
from bot.config.schema import load_config  # noqa: E402
from bot.serving import tune_gc_for_serving  # noqa: E402
from middleware.decision_log import DecisionLog  # noqa: E402
from middleware.llm.scripted import FunctionModel  # noqa: E402
from middleware.types import ChatRequest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "What's a good way to learn Python?",
    "Can you summarise the meeting notes from Tuesday in three bullets?",
    "How do I reverse a list in place?",
    "Tell me a fun fact about octopuses.",
]


async def run(n: int, concurrency: int, folder: str, with_history: bool) -> dict[str, float]:
    config = load_config(REPO / "config.toml")
    config = config.model_copy(
        update={
            "log": config.log.model_copy(update={"path": f"{folder}/tp-{with_history}.db"}),
            "pipeline": config.pipeline.model_copy(
                update={"history_turns": config.pipeline.history_turns if with_history else 0}
            ),
        }
    )
    log = await DecisionLog.open(config.log.path)
    model = FunctionModel(lambda msgs, _s: "Sure! " + msgs[-1].content[:60])
    bot = GuardBot(config, log, env={}, model=model)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(w: int) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await bot.handle(
                ChatRequest(
                    platform="bench",
                    channel_id="c",
                    thread_id=f"t{w}",
                    user_id=f"u{w}",
                    text=TEXTS[i % len(TEXTS)],
                )
            )

    # Warm-up outside the clock, as `guardbot run` does at start: the guards are built
    # (the profanity model loads once), then the start's heap is frozen; one message.
    await bot.handle(ChatRequest(platform="bench", channel_id="c", text="warm up"))
    bot.warm_up()
    tune_gc_for_serving()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for w in range(concurrency):
            tg.create_task(worker(w))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await bot.close()
    return {
        "messages": n,
        "history": with_history,
        "wall_per_s": n / wall,
        "cpu_per_s": n / cpu,
        "cpu_per_message_ms": cpu / n * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    with tempfile.TemporaryDirectory() as folder:
        rows = [await run(args.n, args.concurrency, folder, h) for h in (False, True)]
    print(f"{'history':>8} {'messages':>9} {'wall msg/s':>11} {'cpu msg/s':>10} {'cpu ms/msg':>11}")
    for r in rows:
        print(
            f"{r['history']!s:>8} {r['messages']:>9} {r['wall_per_s']:>11.0f} "
            f"{r['cpu_per_s']:>10.0f} {r['cpu_per_message_ms']:>11.3f}"
        )
    print("target: >= 2,000 messages/s on one core (zero-latency model, offline guards, logging)")
    if args.json:
        print(
            json.dumps(
                {
                    "runs": rows,
                    "messages_per_s": min(r["wall_per_s"] for r in rows),
                    "target_ratio": min(r["wall_per_s"] for r in rows) / 2000,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
