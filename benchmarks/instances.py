"""Several instances, one PostgreSQL log: committed decisions/s, commit latency, the chain lock.

A throwaway PostgreSQL server (tests/support/postgres_server.py: ``fsync =
off``, so no commit waits for this disk; its databases here commit with
``synchronous_commit = on``, as a shared log must). Each instance is a process
with a PostgresLog (its own group-committing writer). Modes, for 1, 2 and 3
instances:

- saturation: CONCURRENCY callers per instance record as fast as they can;
- offered load (``--rate``, 1,000/s): the instances together submit that many
  decisions/s on a fixed schedule, split between them (an open loop), which
  measures the chain lock and commit latency below the ceiling;
- bots (``--bot-rate`` messages/s to each instance, ``--model-ms``): each
  instance is a whole GuardBot (shipped offline guards, history read from the
  shared log, a delivery after each reply) whose model answers after a fixed
  latency, as a bot waits on its provider: the setting instances are added
  for, and one where they are not CPU-bound.

Per row: decisions/s, p50/p95 commit latency (from the scheduled time; for
bots the whole message, model included), the instances' share of time waiting
for the chain lock, the lock's busy share (sampled on the server: at 100% the
lock is the bottleneck), the mean group, CPU per decision in the instances
and the server (the sampler's backend left out), the cores that used, what
other work took meanwhile, and the machine bound: the decisions/s the cores
could carry at that CPU per decision if nothing else ran. One instance using
``u`` cores leaves at most ``cores / u`` for 3 instances, whatever the lock
does; the summary prints both ratios. ``--compare`` adds the saturation rows
with the shared statement-per-table write, interleaved; one instance with
three instances' callers shows whether the bound is per instance. Then
``verify`` on every log. ``--json``: one JSON object, last line.

    .venv/bin/python -m benchmarks.instances [--seconds 5] [--rate 1000] [--bot-rate 100]
        [--model-ms 300] [--compare] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bot.app import GuardBot
from bot.config.schema import load_config
from bot.serving import tune_gc_for_serving
from middleware.decision_log.postgres import PostgresLog, append
from middleware.decision_log.postgres.connection import CHAIN_LOCK_KEY
from middleware.decision_log.postgres.url import PgTarget
from middleware.llm.model import Message, ModelSettings
from middleware.llm.scripted import FunctionModel
from middleware.types import ChatRequest, Decision, new_id
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer, start_server

CONCURRENCY = 64  # callers per instance in the saturation mode (messages in flight)
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.004  # how often the server is asked who holds the chain lock
CORES = len(os.sched_getaffinity(0))  # what the instances and the server share
REPO = Path(__file__).resolve().parents[1]
THREADS = 100  # conversations per bot: each message continues one (history from the log)
TEXTS = (
    "What's a good way to learn Python?",
    "Can you summarise the meeting notes from Tuesday in three bullets?",
    "How do I reverse a list in place?",
    "Tell me a fun fact about octopuses.",
)


def _decision(template: Decision, n: int) -> Decision:
    """A new decision to record (a copy with its own id: building one is the pipeline's cost)."""
    request = template.request.model_copy(update={"text": f"message {n}"})
    return template.model_copy(update={"id": new_id(), "request": request})


async def _bot(log: PostgresLog, model_s: float) -> Callable[[int], Awaitable[None]]:
    """A GuardBot on ``log`` as `guardbot run` has one, its model answering after ``model_s``."""

    async def reply(messages: Sequence[Message], _settings: ModelSettings) -> str:
        await asyncio.sleep(model_s)  # the provider's latency: the bot waits, its CPU is free
        return "Sure! " + messages[-1].content[:60]

    bot = GuardBot(load_config(REPO / "config.toml"), log, env={}, model=FunctionModel(reply))
    await bot.settings.load()
    log.on_settings_changed(bot.settings.load)
    bot.warm_up()
    tune_gc_for_serving()

    async def message(n: int) -> None:
        thread = f"t{n % THREADS}"
        request = ChatRequest(platform="bench", channel_id="c", thread_id=thread,
                              user_id=thread, text=TEXTS[n % len(TEXTS)])  # fmt: skip
        decision = await bot.handle(request)
        await bot.record_delivery(decision, sent=True, error=None)  # as an adapter does

    return message


async def _instance(
    url: str, seconds: float, rate: float, shared_write: bool, callers: int, model_s: float
) -> dict[str, Any]:
    if shared_write:  # what the one-statement append replaced, for comparison
        append.prepare = lambda jobs: None
    log = await PostgresLog.open_url(PgTarget(url))
    if model_s:
        record = await _bot(log, model_s)
    else:
        template = make_decision("warm-up")

        async def record(n: int) -> None:
            await log.record(_decision(template, n))

    for n in range(20):  # connections made, statements prepared
        await record(n)
    latencies: list[float] = []
    writer = log.writer_stats
    lock0 = (log.lock_stats.wait_s, log.lock_stats.held_s, writer.batches, writer.jobs)
    cpu0, began, window = time.process_time(), time.perf_counter(), time.time()
    stop = began + seconds

    async def one(n: int, due: float) -> None:
        await record(n)
        latencies.append(time.perf_counter() - due)

    if rate:  # open loop: decision n is due at began + n / rate, whatever came before
        tasks = []
        n = 0
        while (due := began + n / rate) < stop:
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            tasks.append(asyncio.create_task(one(n, due)))
            n += 1
        await asyncio.gather(*tasks)
    else:

        async def caller(c: int) -> None:
            n = c
            while time.perf_counter() < stop:
                await one(n, time.perf_counter())
                n += callers

        await asyncio.gather(*(caller(c) for c in range(callers)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu0
    stats = log.lock_stats
    groups, jobs = writer.batches - lock0[2], writer.jobs - lock0[3]
    await log.close()
    return {"decisions": len(latencies), "elapsed_s": elapsed, "latencies": latencies,
            "lock_wait_s": stats.wait_s - lock0[0], "lock_held_s": stats.held_s - lock0[1],
            "cpu_s": cpu, "window": (window, window + elapsed), "groups": groups,
            "jobs": jobs}  # fmt: skip


def _run(*args: Any) -> None:
    *options, out = args
    out.put(asyncio.run(_instance(*options)))


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def _sample_lock(url: str, stop: Any, out: Any) -> None:
    """Whether anyone holds the chain lock, and how many wait for it, every SAMPLE_S.

    Seen from the server, so a holder that is descheduled while it holds the
    lock counts, and the time its COMMIT reply spends on the way back does not.
    Also what its own backend spent, which the server's CPU per decision leaves out.
    """
    conn = await asyncpg.connect(url)
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    cpu0 = _backend_cpu_s(pid)
    samples = []
    while not stop.is_set():
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
            "FROM pg_locks WHERE locktype = 'advisory' AND objid = $1",
            CHAIN_LOCK_KEY & 0xFFFFFFFF,
        )
        samples.append((time.time(), row[0], row[1], *_machine_busy()))
        await asyncio.sleep(SAMPLE_S)
    out.put((samples, _backend_cpu_s(pid) - cpu0))
    await conn.close()


def _sampler(url: str, stop: Any, out: Any) -> None:
    asyncio.run(_sample_lock(url, stop, out))


def _server_cpu_s(server: PostgresServer) -> float:
    """CPU used by the server so far: the postmaster, its live children and those reaped."""
    main = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == main:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == main:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (every user's processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def measure(
    server: PostgresServer,
    instances: int,
    seconds: float,
    rate: float,
    shared_write: bool = False,
    callers: int = CONCURRENCY,
    model_s: float = 0.0,
) -> dict[str, Any]:
    url = server.create_database()
    asyncio.run(_migrate(url))
    queue: Any = multiprocessing.Queue()
    options = (url, seconds, rate / instances, shared_write, callers, model_s, queue)
    procs = [multiprocessing.Process(target=_run, args=options) for _ in range(instances)]
    stop, samples_out = multiprocessing.Event(), multiprocessing.Queue()  # type: ignore[var-annotated]
    sampler = multiprocessing.Process(target=_sampler, args=(url, stop, samples_out))
    sampler.start()
    server0 = _server_cpu_s(server)
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    first, last = max(r["window"][0] for r in results), min(r["window"][1] for r in results)
    all_samples, sampler_cpu = samples_out.get()
    samples = [s for s in all_samples if first <= s[0] <= last]
    sampler.join()
    server_cpu = _server_cpu_s(server) - server0 - sampler_cpu
    decisions = sum(r["decisions"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    held = sum(r["lock_held_s"] for r in results)
    # from the first arrival to the last commit, less the model's fixed wait (not throughput)
    rate_per_s = decisions / (elapsed - model_s)
    cpu_per_decision = (sum(r["cpu_s"] for r in results) + server_cpu) / decisions
    # the machine's CPU between the samples around the window (a short run has none in it)
    a = next((s for s in reversed(all_samples) if s[0] <= first), all_samples[0])
    b = next((s for s in all_samples if s[0] >= last), all_samples[-1])
    busy = (b[3] - a[3]) / max(b[4] - a[4], 1e-9)
    return {
        "instances": instances,
        "mode": _mode(rate, shared_write, callers, model_s, instances),
        "decisions_per_s": round(rate_per_s, 1),
        "p50_commit_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p95_commit_ms": round(lat[int(len(lat) * 0.95)] * 1000, 2),
        "lock_wait_ratio": round(sum(r["lock_wait_s"] for r in results) / (elapsed * instances), 4),
        # held: as the writers time it (lock granted -> COMMIT answered; overlaps
        # another's hold when the box is busy); busy: the server's samples
        "lock_held_ratio": round(held / elapsed, 4),
        "lock_busy_ratio": round(sum(s[1] > 0 for s in samples) / max(len(samples), 1), 4),
        "lock_queue_mean": round(sum(s[2] for s in samples) / max(len(samples), 1), 2),
        "lock_held_us_per_decision": round(held / decisions * 1e6, 1),
        "group_mean": round(
            sum(r["jobs"] for r in results) / max(sum(r["groups"] for r in results), 1), 1
        ),
        "instance_cpu_us_per_decision": round(sum(r["cpu_s"] for r in results) / decisions * 1e6),
        # the server's CPU includes starting the instances' connections (a few ms each)
        "server_cpu_us_per_decision": round(server_cpu / decisions * 1e6),
        "cpu_us_per_decision": round(cpu_per_decision * 1e6),
        "cores_used": round(rate_per_s * cpu_per_decision, 2),  # by the instances and server
        "others_cores": round(max(busy * CORES - rate_per_s * cpu_per_decision, 0.0), 2),
        # what the cores could carry at this CPU per decision if nothing else ran
        "machine_bound_per_s": round(CORES / cpu_per_decision, 1),
        "machine_cpu_busy_ratio": round(busy, 3),  # every process's, other work included
        # (others_cores: what other work took meanwhile, so a busy box shows in the row)
    }


def _mode(rate: float, shared_write: bool, callers: int, model_s: float, instances: int) -> str:
    if model_s:
        return f"bots {rate / instances:g}/s"
    if rate:
        return f"{rate:g}/s"
    mode = "shared write" if shared_write else "saturation"
    return mode if callers == CONCURRENCY else f"{mode} x{callers // CONCURRENCY}"


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:  # the throwaway cluster commits asynchronously; a shared log must not
        await conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = on")
    finally:
        await conn.close()
    await (await PostgresLog.open_url(PgTarget(url))).close()  # not inside the timed runs


async def verify_speed(url: str) -> dict[str, Any]:
    log = await PostgresLog.open_url(PgTarget(url), read_only=True)
    started = time.perf_counter()
    report = await log.verify()
    took = time.perf_counter() - started
    await log.close()
    return {"verify_ok": report.ok, "verified": report.checked,
            "verify_records_per_s": round(report.checked / took, 1)}  # fmt: skip


COLUMNS = (  # (heading, field, format) of the printed table
    ("mode", "mode", ">14"), ("inst", "instances", ">4"), ("decisions/s", "decisions_per_s", ">11"),
    ("p50 ms", "p50_commit_ms", ">7"), ("p95 ms", "p95_commit_ms", ">7"),
    ("lock wait", "lock_wait_ratio", ">9.1%"), ("lock busy", "lock_busy_ratio", ">9.1%"),
    ("queue", "lock_queue_mean", ">5"), ("group", "group_mean", ">5"),
    ("held us/d", "lock_held_us_per_decision", ">9"),
    ("inst us/d", "instance_cpu_us_per_decision", ">9"),
    ("pg us/d", "server_cpu_us_per_decision", ">7"), ("cores", "cores_used", ">5"),
    ("others", "others_cores", ">6"), ("bound/s", "machine_bound_per_s", ">8.0f"),
)  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> None:
    print(" ".join(f"{heading:{fmt.rstrip('.0%1f')}}" for heading, _, fmt in COLUMNS))
    for r in rows:
        print(" ".join(f"{r[key]:{fmt}}" for _, key, fmt in COLUMNS))


def scaling(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """3 instances against 1 at saturation, as measured and as the machine allows: at
    most the machine bound at the CPU per decision 3 instances spent, over 1's rate."""
    by = {(r["mode"], r["instances"]): r for r in rows}
    one, three = by[("saturation", 1)], by[("saturation", 3)]
    one_rate = one["decisions_per_s"]
    summary = {
        "scaling_3_vs_1_ratio": round(three["decisions_per_s"] / one_rate, 2),
        "machine_bound_3_vs_1_ratio": round(three["machine_bound_per_s"] / one_rate, 2),
        "one_instance_cores": one["cores_used"],
        "cores": CORES,
    }
    bots = [r for r in rows if r["mode"].startswith("bots")]
    if bots:
        one_bot, three_bots = bots[0]["decisions_per_s"], bots[-1]["decisions_per_s"]
        summary["bots_scaling_3_vs_1_ratio"] = round(three_bots / one_bot, 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load, decisions/s")
    parser.add_argument("--bot-rate", type=float, default=100.0, help="messages/s per bot; 0: none")
    parser.add_argument("--model-ms", type=float, default=300.0, help="the bots' model latency")
    parser.add_argument("--compare", action="store_true", help="also the shared write")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = start_server()
    try:
        rows = []
        for n in (1, 2, 3):
            rows.append(measure(server, n, args.seconds, 0.0, False))
            if args.compare:
                rows.append(measure(server, n, args.seconds, 0.0, shared_write=True))
        # as many messages in flight as three instances have, in one: is the bound the
        # instance (its group-commit cycle) or the machine?
        rows.append(measure(server, 1, args.seconds, 0.0, callers=3 * CONCURRENCY))
        for n in (1, 2, 3):
            rows.append(measure(server, n, args.seconds, args.rate))
        for n in (1, 2, 3) if args.bot_rate else ():
            rows.append(
                measure(server, n, args.seconds, args.bot_rate * n, model_s=args.model_ms / 1000)
            )
        checks = [asyncio.run(verify_speed(server.url(db))) for db in server.databases]
    finally:
        server.remove()
    _table(rows)
    largest = max(checks, key=lambda c: c["verified"])
    ok = all(c["verify_ok"] for c in checks)
    print(f"verify: every log ok={ok}; {largest['verified']} records at "
          f"{largest['verify_records_per_s']}/s")  # fmt: skip
    summary = {"rows": rows, **largest, "verify_ok": ok, **scaling(rows)}
    print(
        f"3 instances vs 1 at saturation: {summary['scaling_3_vs_1_ratio']}x measured; one "
        f"instance used {summary['one_instance_cores']} of {CORES} cores, so at most "
        f"{summary['machine_bound_3_vs_1_ratio']}x at the CPU per decision 3 instances spent"
    )
    if "bots_scaling_3_vs_1_ratio" in summary:
        print(f"bots ({args.bot_rate:g} messages/s each, model {args.model_ms:g} ms): "
              f"3 vs 1 {summary['bots_scaling_3_vs_1_ratio']}x")  # fmt: skip
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
