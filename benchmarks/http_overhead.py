"""Per-message cost over real HTTP: the whole bot against a raw-aiohttp floor.

`throughput.py` uses an in-process model, so it never sees what a deployment
pays for the HTTP client. Here every system runs in its own process against
one OpenAI-compatible stub (also in its own process, tests/stubs/process.py)
on 127.0.0.1, and they take turns message by message:

- ``floor``: raw aiohttp doing the same two calls (an `llm_judge` input guard
  and a generation, started together; an unsafe verdict closes generation);
- ``guardbot``: GuardBot.handle, the whole bot path with its SQLite log, on the
  default transport (aiohttp under the `openai` client);
- ``guardbot-httpx``: the same bot on the `openai` client's httpx transport
  (``[llm] transport = "httpx"``), the fallback;
- ``guardbot-baseline`` (with ``--baseline TREE``): the bot from another
  checkout, e.g. ``git worktree add /tmp/before <rev>``: a before/after from
  one sitting. Use ``-n 12`` with it to stay under five minutes.

Given two CPUs or more (``taskset -c 0,1``), the stub runs on the last and
every client on the first, as a model server runs on other hardware: a stub
sharing the clients' core could only read a request once the client that sent
it stopped for breath, which charges a client's CPU to its latency twice.

Latency is measured at 800 ms generation / 300 ms guard and at 300/800;
client CPU per message and messages/s sequentially and at 50 concurrent with
the stub answering at once. Prints a table, and with ``--json`` one JSON object
as the last line.

    taskset -c 0,1 python benchmarks/http_overhead.py [-n 20] [--baseline TREE] [--json]

The issue named this script ``benchmarks/http.py``; a script of that name
shadows the standard library's ``http`` for every script in the folder.
"""

from __future__ import annotations

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator
from pathlib import Path
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.stub_bot import GEN_MODEL, GUARD_MODEL, bot_config, text_for  # noqa: E402
from tests.stubs.process import stub_process  # noqa: E402

CPUS = sorted(os.sched_getaffinity(0))


@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Processes started inside run on ``cpu`` (they inherit the driver's affinity)."""
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, CPUS)


@contextlib.contextmanager
def stub(*args: str) -> Iterator[str]:
    """The stub on the last CPU, away from the clients when there are two."""
    with contextlib.ExitStack() as stack:
        with on_cpu(CPUS[-1]):
            url = stack.enter_context(stub_process("latency", *args))
        yield url


SYSTEMS = ["floor", "guardbot", "guardbot-httpx"]  # + "guardbot-baseline" with --baseline
GUARD_PROMPT = "Is this message unsafe? Answer as JSON."


# --- workers (one process per system) ----------------------------------------


class Floor:
    """The least any client can do: two POSTs with aiohttp, JSON parsed by hand."""

    def __init__(self, base_url: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(headers={"Authorization": "Bearer not-needed"})
        self.url = base_url + "/chat/completions"

    async def call(self, model: str, text: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        async with self.session.post(self.url, json=body) as response:
            data = await response.json()
        return str(data["choices"][0]["message"]["content"])

    async def one(self, i: int, unsafe: bool) -> None:
        text = text_for(i, unsafe)
        generation = asyncio.create_task(self.call(GEN_MODEL, text))
        verdict = json.loads(await self.call(GUARD_MODEL, f"{GUARD_PROMPT}\n{text}"))
        if verdict["unsafe"]:
            generation.cancel()  # closes the connection: the stub records closed_early
            with contextlib.suppress(asyncio.CancelledError):
                await generation
            return
        await generation

    async def close(self) -> None:
        await self.session.close()


class Bot:
    """GuardBot.handle, the whole bot path with its SQLite decision log."""

    @classmethod
    async def open(cls, base_url: str, transport: str | None, folder: str) -> Bot:
        from bot.app import GuardBot
        from bot.config.schema import parse_config

        config = parse_config(bot_config(base_url, f"{folder}/bot.db", transport), "b")
        # As `guardbot run` opens it: the log from the config, settings loaded, warmed up,
        # then the collector tuned for serving.
        bot = await GuardBot.open(config, env={})
        try:
            from bot.serving import tune_gc_for_serving
        except ImportError:  # a --baseline tree from before it: its open() tuned it itself
            pass
        else:
            tune_gc_for_serving()
        return cls(bot)

    def __init__(self, bot: Any) -> None:
        from middleware.types import Action, ChatRequest

        self.bot, self.action, self.request = bot, Action, ChatRequest

    async def one(self, i: int, unsafe: bool) -> None:
        request = self.request(
            platform="bench",
            channel_id="c",
            thread_id=f"t{i}",
            user_id="u",
            text=text_for(i, unsafe),
        )
        decision = await self.bot.handle(request)
        if decision.action is not (self.action.BLOCKED if unsafe else self.action.REPLIED):
            raise SystemExit(f"unexpected {decision.action}: {decision.error}")

    async def close(self) -> None:
        await self.bot.close()


async def serve(system: str, base_url: str) -> None:
    """Answer the driver's commands, one JSON line each, on stdin/stdout."""
    with tempfile.TemporaryDirectory() as folder:
        client: Floor | Bot
        if system == "floor":
            client = Floor(base_url)
        else:
            # The baseline's own config may predate `[llm] transport`.
            transport = {"guardbot": "aiohttp", "guardbot-httpx": "httpx"}.get(system)
            client = await Bot.open(base_url, transport, folder)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd = json.loads(line)
            if cmd["op"] == "one":
                started = time.perf_counter()
                await client.one(cmd["i"], cmd["unsafe"])
                out: dict[str, float] = {"ms": (time.perf_counter() - started) * 1000}
            else:  # "batch": n allowed messages over `concurrency` tasks
                out = await batch(client, cmd["n"], cmd["concurrency"], cmd["start"])
            print(json.dumps(out), flush=True)
        await client.close()


async def batch(client: Floor | Bot, n: int, concurrency: int, start: int) -> dict[str, float]:
    todo = iter(range(start, start + n))

    async def worker() -> None:
        for i in todo:
            await client.one(i, False)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_ms": cpu * 1000 / n, "per_s": n / wall}


# --- driver ------------------------------------------------------------------


class Worker:
    baseline = ""

    def __init__(self, system: str, base_url: str) -> None:
        self.system = system
        tree = ["--baseline", self.baseline] if system == "guardbot-baseline" else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", system, "--base-url", base_url, *tree],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    @classmethod
    def start(cls, base_url: str) -> list[Worker]:
        """One worker per system, started together (each imports for a second or two)."""
        with on_cpu(CPUS[0]):
            workers = [cls(s, base_url) for s in SYSTEMS]
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                for other in workers:
                    other.proc.kill()
                raise RuntimeError(f"{w.system} worker did not start")
        return workers

    def ask(self, **cmd: Any) -> dict[str, float]:
        self.stdin.write(json.dumps(cmd) + "\n")
        self.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.system} worker died")
        answer: dict[str, float] = json.loads(line)
        return answer

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(30)


def latency(gen_ms: int, guard_ms: int, n: int) -> dict[str, Any]:
    with stub(str(gen_ms / 1000), str(guard_ms / 1000)) as url:
        workers = Worker.start(url)
        times: dict[str, dict[bool, list[float]]] = {s: {False: [], True: []} for s in SYSTEMS}
        for i in range(2 * n + 4):
            unsafe = i % 2 == 1
            # Rotate who goes first, so no system always follows the same neighbour.
            for k in range(len(workers)):
                w = workers[(i + k) % len(workers)]
                ms = w.ask(op="one", i=i, unsafe=unsafe)["ms"]
                if i >= 4:  # warm-up: connections, first-use imports
                    times[w.system][unsafe].append(ms)
        for w in workers:
            w.close()
    row: dict[str, Any] = {"generation_ms": gen_ms, "guard_ms": guard_ms}
    floor = {u: statistics.median(times["floor"][u]) for u in (False, True)}
    for s in SYSTEMS:
        allowed, blocked = statistics.median(times[s][False]), statistics.median(times[s][True])
        row[s] = {
            "allowed_p50_ms": allowed,
            "blocked_p50_ms": blocked,
            "allowed_over_floor_ms": allowed - floor[False],
            "blocked_over_floor_ms": blocked - floor[True],
            "blocked_vs_guard_ratio": blocked / guard_ms,
        }
    return row


def cost(sequential_n: int, concurrent_n: int, rounds: int = 5) -> dict[str, Any]:
    """Medians over ``rounds``, the systems taking turns (in rotation) within each, so
    a busy moment of the machine falls on all of them alike."""
    samples: dict[str, dict[str, list[float]]] = {s: {} for s in SYSTEMS}
    with stub("0", "0") as url:
        workers = Worker.start(url)
        for w in workers:
            w.ask(op="batch", n=200, concurrency=50, start=10**6)  # warm-up: the pool fills
        for r in range(rounds):
            for k in range(len(workers)):
                w = workers[(r + k) % len(workers)]
                start = r * (sequential_n + concurrent_n)  # new threads: no history
                seq = w.ask(op="batch", n=sequential_n // rounds, concurrency=1, start=start)
                start += sequential_n
                par = w.ask(op="batch", n=concurrent_n // rounds, concurrency=50, start=start)
                for key, value in (
                    ("sequential_cpu_per_message_ms", seq["cpu_ms"]),
                    ("sequential_messages_per_s", seq["per_s"]),
                    ("concurrent_cpu_per_message_ms", par["cpu_ms"]),
                    ("concurrent_messages_per_s", par["per_s"]),
                ):
                    samples[w.system].setdefault(key, []).append(value)
        for w in workers:
            w.close()
    out = {s: {k: statistics.median(v) for k, v in samples[s].items()} for s in SYSTEMS}
    floor_cpu = out["floor"]["concurrent_cpu_per_message_ms"]
    for s in SYSTEMS:
        out[s]["cpu_vs_floor_ratio"] = out[s]["concurrent_cpu_per_message_ms"] / floor_cpu
    return out


def report(rows: list[dict[str, Any]], costs: dict[str, Any]) -> None:
    print("latency (p50) over the raw-aiohttp floor, same run, turns message by message:")
    head = f"{'allowed':>8} {'over':>6} | {'blocked':>8} {'over':>6}"
    print(f"{'system':<17} {'gen/guard':>9} | {head}")
    for r in rows:
        for s in SYSTEMS:
            x = r[s]
            print(
                f"{s:<17} {r['generation_ms']:>4}/{r['guard_ms']:<4} | "
                f"{x['allowed_p50_ms']:>8.1f} {x['allowed_over_floor_ms']:>+6.1f} | "
                f"{x['blocked_p50_ms']:>8.1f} {x['blocked_over_floor_ms']:>+6.1f}"
            )
    print("client CPU per message and messages/s, stub at 0 ms, SQLite log on:")
    head = f"{'50x cpu ms':>10} {'msg/s':>7} {'vs floor':>8}"
    print(f"{'system':<17} | {'seq cpu ms':>10} {'msg/s':>7} | {head}")
    for s in SYSTEMS:
        c = costs[s]
        print(
            f"{s:<17} | {c['sequential_cpu_per_message_ms']:>10.2f} "
            f"{c['sequential_messages_per_s']:>7.0f} | {c['concurrent_cpu_per_message_ms']:>10.2f} "
            f"{c['concurrent_messages_per_s']:>7.0f} {c['cpu_vs_floor_ratio']:>7.2f}x"
        )
    print(f"clients on CPU {CPUS[0]}, stub on CPU {CPUS[-1]}")
    print("targets: allowed over floor <= 2 ms, blocked / guard <= 1.01, CPU <= 2x the floor's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="messages of each kind per setting")
    parser.add_argument("--sequential", type=int, default=300, help="messages, one at a time")
    parser.add_argument("--concurrent", type=int, default=2000, help="messages, 50 at a time")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--baseline", help="another checkout of guardbot to compare with")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.baseline:  # import bot/ and middleware/ from that checkout
            sys.path.insert(0, str(Path(args.baseline).resolve()))
        asyncio.run(serve(args.worker, args.base_url))
        return
    if args.baseline:
        SYSTEMS.append("guardbot-baseline")
        Worker.baseline = args.baseline
    rows = [latency(800, 300, args.n), latency(300, 800, args.n)]
    costs = cost(args.sequential, args.concurrent)
    report(rows, costs)
    if args.json:
        bot = costs["guardbot"]
        summary = {
            "settings": [
                {
                    "generation_ms": r["generation_ms"],
                    "guard_ms": r["guard_ms"],
                    "allowed_over_floor_ms": r["guardbot"]["allowed_over_floor_ms"],
                    "blocked_over_floor_ms": r["guardbot"]["blocked_over_floor_ms"],
                    "blocked_vs_guard_ratio": r["guardbot"]["blocked_vs_guard_ratio"],
                    "systems": {s: r[s] for s in SYSTEMS},
                }
                for r in rows
            ],
            "cost": costs,
            "cpu_vs_floor_ratio": bot["cpu_vs_floor_ratio"],
            "httpx_cpu_vs_floor_ratio": costs["guardbot-httpx"]["cpu_vs_floor_ratio"],
            "concurrent_messages_per_s": bot["concurrent_messages_per_s"],
            "allowed_over_floor_ms": max(r["guardbot"]["allowed_over_floor_ms"] for r in rows),
            "blocked_vs_guard_ratio": max(r["guardbot"]["blocked_vs_guard_ratio"] for r in rows),
            "messages_per_kind": args.n,
            "baseline": args.baseline,
            "client_cpu": CPUS[0],
            "stub_cpu": CPUS[-1],
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
