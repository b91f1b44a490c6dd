"""Several instances, one PostgreSQL log: committed decisions/s, commit latency, chain-lock wait.

Starts a throwaway PostgreSQL server (tests/support/postgres_server.py), then
for 1, 2 and 3 instances (separate processes, each a PostgresLog with its own
group-committing writer and CONCURRENCY callers recording decisions) measures
decisions/s committed and chained, p50/p95 commit latency, and the share of
the writers' time spent waiting for the chain's advisory lock; then the speed
of `verify` over everything written. ``--json``: one JSON object, last line.

    .venv/bin/python -m benchmarks.instances [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from typing import Any

from middleware.decision_log.postgres import PostgresLog
from middleware.decision_log.postgres.url import PgTarget
from tests.support.decision_log_support import make_decision
from tests.support.postgres_server import start_server

CONCURRENCY = 64  # callers per instance (messages in flight)


async def _instance(url: str, seconds: float) -> dict[str, Any]:
    log = await PostgresLog.open_url(PgTarget(url))
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(n: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await log.record(make_decision(f"caller {n} message {i}"))
            latencies.append(time.perf_counter() - started)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    lock = log.lock_stats
    await log.close()
    return {"decisions": len(latencies), "elapsed_s": elapsed, "latencies": latencies,
            "lock_wait_s": lock.wait_s}  # fmt: skip


def _run(url: str, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_instance(url, seconds)))


def measure(url: str, instances: int, seconds: float) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_run, args=(url, seconds, queue)) for _ in range(instances)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    total = sum(r["decisions"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    return {
        "instances": instances,
        "decisions_per_s": round(total / elapsed, 1),
        "p50_commit_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p95_commit_ms": round(lat[int(len(lat) * 0.95)] * 1000, 2),
        "lock_wait_ratio": round(sum(r["lock_wait_s"] for r in results) / (elapsed * instances), 4),
    }


async def verify_speed(url: str) -> dict[str, Any]:
    log = await PostgresLog.open_url(PgTarget(url), read_only=True)
    started = time.perf_counter()
    report = await log.verify()
    took = time.perf_counter() - started
    await log.close()
    return {"verify_ok": report.ok, "verified": report.checked,
            "verify_records_per_s": round(report.checked / took, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = start_server()
    try:
        rows = []
        url = ""
        for n in (1, 2, 3):
            url = server.create_database()
            rows.append(measure(url, n, args.seconds))
        check = asyncio.run(verify_speed(url))
    finally:
        server.remove()
    print(f"{'instances':>9} {'decisions/s':>12} {'p50 ms':>8} {'p95 ms':>8} {'lock wait':>10}")
    for r in rows:
        print(f"{r['instances']:>9} {r['decisions_per_s']:>12} {r['p50_commit_ms']:>8} "
              f"{r['p95_commit_ms']:>8} {r['lock_wait_ratio']:>10.1%}")  # fmt: skip
    ok = check["verify_ok"]
    print(f"verify: {check['verified']} records, {check['verify_records_per_s']}/s, ok={ok}")
    summary = {
        "rows": rows,
        **check,
        "scaling_3_vs_1_ratio": round(rows[2]["decisions_per_s"] / rows[0]["decisions_per_s"], 2),
    }
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
