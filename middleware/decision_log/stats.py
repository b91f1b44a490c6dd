"""Aggregates for `guardbot stats`: volume, block rates, latency by stage, tokens and cost.

Percentiles are computed in Python from the window's values (nearest rank);
SQLite has no percentile function and a window of a few hundred thousand
decisions is a few megabytes of floats.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import aiosqlite

from middleware.decision_log.queries import Filters

CANCELLED = "cancelled"  # how the pipeline's cancelled candidates' errors begin
STAGES = ("total_ms", "input_guards_ms", "generation_ms", "output_guards_ms", "selection_ms")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list[float]) -> dict[str, float | None]:
    return {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)}


async def compute(
    db: aiosqlite.Connection, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    where, params = Filters(since=since, until=until).where()
    window = f"SELECT id FROM decisions WHERE {where}"
    rows = list(
        await db.execute_fetchall(
            f"SELECT action, blocked_by, {', '.join(STAGES)}, saved_ms, tokens_in, tokens_out, "
            f"cost_usd FROM decisions WHERE {where}",
            params,
        )
    )
    total = len(rows)
    actions = Counter(row[0] for row in rows)
    blocked_by = Counter(row[1] or "?" for row in rows if row[0] == "blocked")
    stage_values = {  # a stage that did not run says nothing
        stage: [row[i] for row in rows if stage == "total_ms" or row[i] > 0]
        for i, stage in enumerate(STAGES, start=2)
    }
    saved, tokens_in, tokens_out, cost = (sum((row[i] for row in rows), 0.0) for i in range(7, 11))
    categories = await db.execute_fetchall(
        "SELECT v.category, count(DISTINCT v.decision_id) FROM verdicts v "
        f"WHERE v.blocking = 1 AND v.decision_id IN ({window}) AND v.decision_id IN "
        "(SELECT id FROM decisions WHERE action = 'blocked') GROUP BY v.category",
        params,
    )
    guard_rows = await db.execute_fetchall(
        f"SELECT guard, outcome, latency_ms FROM verdicts WHERE decision_id IN ({window})", params
    )
    guards: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    for guard, outcome, latency in guard_rows:
        entry = guards.setdefault(guard, {"verdicts": 0, "outcomes": defaultdict(int)})
        entry["verdicts"] += 1
        entry["outcomes"][outcome] += 1
        if outcome != "skipped":
            latencies[guard].append(latency)
    # A candidate cancelled on purpose (an input guard blocked, or `first` took another)
    # is recorded with a "cancelled: …" error; it is not the model failing.
    models = await db.execute_fetchall(
        "SELECT model, count(*), sum(tokens_in), sum(tokens_out), "
        f"sum(error IS NOT NULL AND error NOT LIKE '{CANCELLED}%'), "
        f"sum(error LIKE '{CANCELLED}%') "
        f"FROM llm_calls WHERE decision_id IN ({window}) GROUP BY model ORDER BY model",
        params,
    )
    deliveries = await db.execute_fetchall(
        f"SELECT status, count(*) FROM deliveries WHERE decision_id IN ({window}) GROUP BY status",
        params,
    )
    sequential = sum(stage_values["total_ms"]) + saved
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "decisions": total,
        "actions": dict(actions),
        "block_rate_ratio": _ratio(actions.get("blocked", 0), total),
        "blocked_by_guard": {
            g: {"blocked": n, "block_rate_ratio": _ratio(n, total)}
            for g, n in sorted(blocked_by.items(), key=lambda kv: -kv[1])
        },
        "blocked_by_category": {
            (c or "(none)"): {"blocked": n, "block_rate_ratio": _ratio(n, total)}
            for c, n in categories
        },
        "guards": {
            g: {
                "verdicts": e["verdicts"],
                "outcomes": dict(e["outcomes"]),
                "fired_ratio": _ratio(
                    sum(n for o, n in e["outcomes"].items() if o not in ("allow", "skipped")),
                    e["verdicts"],
                ),
                **spread(latencies[g]),
            }
            for g, e in sorted(guards.items())
        },
        "latency": {stage: spread(values) for stage, values in stage_values.items()},
        "saved_ms": round(saved, 3),
        "saved_per_decision_ms": round(saved / total, 3) if total else None,
        "saved_ratio": _ratio(saved, sequential),
        "tokens_in": int(tokens_in),
        "tokens_out": int(tokens_out),
        "cost_usd": round(cost, 6),
        "models": {
            m: {
                "calls": n,
                "tokens_in": ti or 0,
                "tokens_out": to or 0,
                "errors": err or 0,
                "cancelled": cancelled or 0,
            }
            for m, n, ti, to, err, cancelled in models
        },
        "deliveries": {status: n for status, n in deliveries},
    }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None
