"""Several instances, one PostgreSQL log: committed decisions/s, commit latency, the chain lock.

Starts a throwaway PostgreSQL server (tests/support/postgres_server.py); each
instance is a separate process with a PostgresLog (its own group-committing
writer) recording decisions. Two modes, each for 1, 2 and 3 instances:

- saturation: CONCURRENCY callers per instance record as fast as they can,
  which measures the most the box commits;
- offered load (``--rate``, 1,000/s by default): the instances together submit
  that many decisions per second on a fixed schedule, split between them (an
  open loop: a late commit does not slow the arrivals), which measures the
  chain lock and commit latency below the ceiling.

Per row: decisions/s committed, p50/p95 commit latency (from a decision's
scheduled time in the offered-load mode), the share of the instances' time
spent waiting for the chain lock, the lock's busy share (the time it was
held by anyone / wall time: at 100% the lock is the bottleneck), and what
bounds the rate: CPU per decision in the instances and in the server, and the
machine's CPU in use. Then the speed of ``verify``. ``--compare`` also runs the
saturation rows with the shared statement-per-table write (what the one-call
append replaced), interleaved; one instance with three instances' callers shows
whether the bound is per instance or the machine's. ``--json``: one JSON object, last line.

    .venv/bin/python -m benchmarks.instances [--seconds 5] [--rate 1000] [--compare] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import asyncpg

from middleware.decision_log.postgres import PostgresLog, append
from middleware.decision_log.postgres.connection import CHAIN_LOCK_KEY
from middleware.decision_log.postgres.url import PgTarget
from middleware.types import Decision, new_id
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import PostgresServer, start_server

CONCURRENCY = 64  # callers per instance in the saturation mode (messages in flight)
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.004  # how often the server is asked who holds the chain lock


def _decision(template: Decision, n: int) -> Decision:
    """A new decision to record (a copy with its own id: building one is the pipeline's cost)."""
    request = template.request.model_copy(update={"text": f"message {n}"})
    return template.model_copy(update={"id": new_id(), "request": request})


async def _instance(
    url: str, seconds: float, rate: float, shared_write: bool, callers: int
) -> dict[str, Any]:
    if shared_write:  # what the one-statement append replaced, for comparison
        append.prepare = lambda jobs: None
    log = await PostgresLog.open_url(PgTarget(url))
    template = make_decision("warm-up")
    for n in range(20):  # connections made, statements prepared
        await log.record(_decision(template, n))
    latencies: list[float] = []
    lock0 = (log.lock_stats.wait_s, log.lock_stats.held_s)
    cpu0, began, window = time.process_time(), time.perf_counter(), time.time()
    stop = began + seconds

    async def one(n: int, due: float) -> None:
        await log.record(_decision(template, n))
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
    await log.close()
    return {"decisions": len(latencies), "elapsed_s": elapsed, "latencies": latencies,
            "lock_wait_s": stats.wait_s - lock0[0], "lock_held_s": stats.held_s - lock0[1],
            "cpu_s": cpu, "window": (window, window + elapsed)}  # fmt: skip


def _run(*args: Any) -> None:
    *options, out = args
    out.put(asyncio.run(_instance(*options)))


async def _sample_lock(url: str, stop: Any, out: Any) -> None:
    """Whether anyone holds the chain lock, and how many wait for it, every SAMPLE_S.

    Seen from the server, so a holder that is descheduled while it holds the
    lock counts, and the time its COMMIT reply spends on the way back does not.
    """
    conn = await asyncpg.connect(url)
    samples = []
    while not stop.is_set():
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
            "FROM pg_locks WHERE locktype = 'advisory' AND objid = $1",
            CHAIN_LOCK_KEY & 0xFFFFFFFF,
        )
        samples.append((time.time(), row[0], row[1]))
        await asyncio.sleep(SAMPLE_S)
    await conn.close()
    out.put(samples)


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
) -> dict[str, Any]:
    url = server.create_database()
    asyncio.run(_migrate(url))
    queue: Any = multiprocessing.Queue()
    per_instance = rate / instances
    procs = [
        multiprocessing.Process(
            target=_run, args=(url, seconds, per_instance, shared_write, callers, queue)
        )
        for _ in range(instances)
    ]
    stop, samples_out = multiprocessing.Event(), multiprocessing.Queue()
    sampler = multiprocessing.Process(target=_sampler, args=(url, stop, samples_out))
    sampler.start()
    server0, (busy0, total0) = _server_cpu_s(server), _machine_busy()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    first, last = max(r["window"][0] for r in results), min(r["window"][1] for r in results)
    samples = [(h, w) for t, h, w in samples_out.get() if first <= t <= last]
    sampler.join()
    server_cpu = _server_cpu_s(server) - server0
    busy, total = _machine_busy()
    decisions = sum(r["decisions"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    held = sum(r["lock_held_s"] for r in results)
    return {
        "instances": instances,
        "mode": _mode(rate, shared_write, callers),
        "decisions_per_s": round(decisions / elapsed, 1),
        "p50_commit_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p95_commit_ms": round(lat[int(len(lat) * 0.95)] * 1000, 2),
        "lock_wait_ratio": round(sum(r["lock_wait_s"] for r in results) / (elapsed * instances), 4),
        # held: as the writers time it (lock granted -> COMMIT answered; overlaps
        # another's hold when the box is busy); busy: the server's samples
        "lock_held_ratio": round(held / elapsed, 4),
        "lock_busy_ratio": round(sum(h > 0 for h, _ in samples) / max(len(samples), 1), 4),
        "lock_queue_mean": round(sum(w for _, w in samples) / max(len(samples), 1), 2),
        "lock_held_us_per_decision": round(held / decisions * 1e6, 1),
        "instance_cpu_us_per_decision": round(sum(r["cpu_s"] for r in results) / decisions * 1e6),
        # the server's CPU includes starting the instances' connections (a few ms each)
        "server_cpu_us_per_decision": round(server_cpu / decisions * 1e6),
        "machine_cpu_busy_ratio": round((busy - busy0) / (total - total0), 3),
    }


def _mode(rate: float, shared_write: bool, callers: int) -> str:
    if rate:
        return f"{rate:g}/s"
    mode = "shared write" if shared_write else "saturation"
    return mode if callers == CONCURRENCY else f"{mode} x{callers // CONCURRENCY}"


async def _migrate(url: str) -> None:
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
    ("queue", "lock_queue_mean", ">5"), ("held us/d", "lock_held_us_per_decision", ">9"),
    ("inst us/d", "instance_cpu_us_per_decision", ">9"),
    ("pg us/d", "server_cpu_us_per_decision", ">7"),
    ("cpu busy", "machine_cpu_busy_ratio", ">8.0%"),
)  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> None:
    print(" ".join(f"{heading:{fmt.rstrip('.0%1')}}" for heading, _, fmt in COLUMNS))
    for r in rows:
        print(" ".join(f"{r[key]:{fmt}}" for _, key, fmt in COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load, decisions/s")
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
        check = asyncio.run(verify_speed(server.url(server.databases[-1])))
    finally:
        server.remove()
    _table(rows)
    ok = check["verify_ok"]
    print(f"verify: {check['verified']} records, {check['verify_records_per_s']}/s, ok={ok}")
    saturated = [r for r in rows if r["mode"] == "saturation"]
    summary = {
        "rows": rows,
        **check,
        "scaling_3_vs_1_ratio": round(
            saturated[2]["decisions_per_s"] / saturated[0]["decisions_per_s"], 2
        ),
    }
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
