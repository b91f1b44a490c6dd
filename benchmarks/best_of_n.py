"""Best-of-N latency and token overhead, against the stub LLM on 127.0.0.1.

For N = 1, 3, 5 candidates with latencies spread over 400..1200 ms (the
fastest one unsafe when N > 1, so ``first`` has to skip it) and a 200 ms
judge / criteria evaluator, each selection method is run through the real
config -> PolicyBuilder -> Pipeline path and the real ``openai`` client (the
stub on its own thread, so its work does not share the measured event loop):

- ``judge`` / ``criteria``: latency / (slowest candidate + judge)   target <= 1.05
- ``first``:                latency / fastest safe candidate         target <= 1.05
- ``vote``:                 latency / slowest candidate              (no model call)

It also reports the tokens one message costs per method and N, and the
extra tokens best-of-N adds over a single reply. Prints a table; with
``--json`` the last line is one JSON object (ratios end in ``_ratio``, times
in ``_ms``). Usage: ``python benchmarks/best_of_n.py [--reps 5] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config.policies import PolicyBuilder  # noqa: E402
from bot.config.providers import ModelProvider  # noqa: E402
from bot.config.schema import parse_config  # noqa: E402
from middleware.pipeline.run import Pipeline  # noqa: E402
from middleware.types import Action, ChatRequest  # noqa: E402
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI  # noqa: E402
from tests.stubs.threaded import stub_in_thread  # noqa: E402

JUDGE_S = 0.2
NS = (1, 3, 5)
METHODS = ("judge", "criteria", "first", "vote")
ANSWER = "Paris is the capital of France."
UNSAFE = "Paris is the capital of France, " + "and it goes on " * 20  # > max_chars


def latencies(n: int) -> list[float]:
    """Candidate latencies in seconds, spread over 0.4..1.2 and not in index order."""
    if n == 1:
        return [0.8]
    spread = [0.4 + 0.8 * i / (n - 1) for i in range(n)]
    return spread[1::2] + spread[0::2]  # e.g. N=3: [0.8, 0.4, 1.2]


def tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the usual rough estimate: four characters per token


def script(delays: list[float]) -> Callable[[Recorded], Reply]:
    fastest = delays.index(min(delays)) if len(delays) > 1 else -1

    def answer(rec: Recorded) -> Reply:
        fmt = (rec.body.get("response_format") or {}).get("json_schema") or {}
        prompt_tokens = tokens(rec.text())
        if fmt.get("name") == "judge_choice":
            label = fmt["schema"]["properties"]["choice"]["enum"][0]
            text = json.dumps({"choice": label, "reason": "complete and correct"})
            return Reply(text, delay_s=JUDGE_S, tokens_in=prompt_tokens, tokens_out=tokens(text))
        if fmt.get("name") == "criteria_scores":
            scores = {k: 8 for k in fmt["schema"]["properties"]["scores"]["properties"]}
            text = json.dumps({"scores": scores, "reason": "good"})
            return Reply(text, delay_s=JUDGE_S, tokens_in=prompt_tokens, tokens_out=tokens(text))
        index = int(rec.body["model"].removeprefix("cand-"))
        text = UNSAFE if index == fastest else ANSWER
        return Reply(text, delay_s=delays[index], tokens_in=prompt_tokens, tokens_out=tokens(text))

    return answer


def config_text(base_url: str, n: int, method: str) -> str:
    models = ", ".join(f'"cand-{i}"' for i in range(n))
    return f"""
[llm]
provider = "openai"
model = "cand-0"
base_url = "{base_url}"
timeout_s = 10
max_retries = 0

[pipeline]
best_of = {n}
models = [{models}]
selection = "{method}"
judge_model = "judge"

[[guards]]
name = "length"
kind = "max_length"
stage = "output"
max_chars = 120
"""


def ideal_s(method: str, delays: list[float]) -> float:
    safe = sorted(delays)[1:] if len(delays) > 1 else delays
    if method == "first":
        return min(safe)
    selection = JUDGE_S if method in ("judge", "criteria") and len(safe) > 1 else 0.0
    return max(delays) + selection


async def measure(stub: StubOpenAI, n: int, method: str, reps: int) -> dict[str, float]:
    delays = latencies(n)
    stub.script = script(delays)  # read by the stub's own thread for each new request
    config = parse_config(config_text(stub.base_url, n, method), "benchmark")
    provider = ModelProvider(config.llm, env={"OPENAI_API_KEY": "sk-bench"})
    policy = PolicyBuilder(provider).policy(config)
    pipeline = Pipeline()
    elapsed: list[float] = []
    cpu: list[float] = []
    used: list[int] = []
    try:
        for rep in range(reps + 1):  # the first run warms up the connection pool
            req = ChatRequest(
                platform="bench",
                user_id="u",
                text="What is the capital of France?",
                message_id=f"{n}-{method}-{rep}",
            )
            began, began_cpu = time.perf_counter(), time.process_time()
            decision = await pipeline.run(req, policy)
            took = time.perf_counter() - began
            cpu_s = time.process_time() - began_cpu
            if decision.action is not Action.REPLIED or decision.reply != ANSWER:
                raise RuntimeError(f"{method} N={n}: unexpected decision {decision.action}")
            if rep:
                elapsed.append(took)
                cpu.append(cpu_s)
                used.append(decision.tokens_in + decision.tokens_out)
    finally:
        for model in list(provider._clients.values()):
            await model.close()  # type: ignore[attr-defined]
    median = statistics.median(elapsed)
    return {
        "latency_ms": round(median * 1000, 1),
        "ideal_ms": round(ideal_s(method, delays) * 1000, 1),
        "latency_ratio": round(median / ideal_s(method, delays), 4),
        "worst_ratio": round(max(elapsed) / ideal_s(method, delays), 4),
        "tokens": round(statistics.mean(used)),
        "cpu_ms": round(statistics.median(cpu) * 1000, 1),
    }


async def run(reps: int) -> dict[str, float]:
    out: dict[str, float] = {}
    rows: list[tuple[str, int, dict[str, float]]] = []
    # The stub runs on its own thread and loop, so its work is not billed to the bot.
    with stub_in_thread(lambda _r: Reply()) as stub:
        baseline = (await measure(stub, 1, "first", reps))["tokens"]
        for method in METHODS:
            for n in NS:
                result = await measure(stub, n, method, reps)
                extra = result["tokens"] - baseline
                rows.append((method, n, result | {"extra": extra}))
                key = f"{method}_n{n}"
                out[f"{key}_latency_ms"] = result["latency_ms"]
                out[f"{key}_ideal_ms"] = result["ideal_ms"]
                out[f"{key}_latency_ratio"] = result["latency_ratio"]
                out[f"{key}_worst_latency_ratio"] = result["worst_ratio"]
                out[f"{key}_cpu_ms"] = result["cpu_ms"]
                out[f"{key}_tokens_per_message"] = result["tokens"]
                out[f"{key}_extra_tokens_per_message"] = extra
                out[f"{key}_tokens_ratio"] = round(result["tokens"] / baseline, 3)
    checked = [r for m, n, r in rows if m in ("judge", "criteria", "first")]
    out["max_latency_ratio"] = max(r["latency_ratio"] for r in checked)
    out["target_ratio"] = 1.05
    print_table(rows, baseline, reps)
    return out


def print_table(rows: list[tuple[str, int, dict[str, float]]], baseline: float, reps: int) -> None:
    judge_ms = JUDGE_S * 1000
    print(f"best-of-N against the stub LLM (median of {reps} runs; judge/eval {judge_ms:.0f} ms)")
    print("ideal: judge/criteria = slowest candidate + judge; first = fastest safe; vote = slowest")
    head = f"{'method':<9}{'N':>3}{'latency ms':>12}{'ideal ms':>10}{'ratio':>8}{'worst':>8}"
    print(head + f"{'cpu ms':>8}{'tokens':>8}{'extra':>8}")
    for method, n, r in rows:
        target = method in ("judge", "criteria", "first")
        mark = "" if not target else "  ok" if r["latency_ratio"] <= 1.05 else "  OVER 1.05"
        print(
            f"{method:<9}{n:>3}{r['latency_ms']:>12.1f}{r['ideal_ms']:>10.1f}"
            f"{r['latency_ratio']:>8.3f}{r['worst_ratio']:>8.3f}{r['cpu_ms']:>8.1f}{r['tokens']:>8.0f}"
            f"{r['extra']:>8.0f}{mark}"
        )
    print(f"single reply (N=1) costs {baseline:.0f} tokens per message; extra = tokens - that")
    print("cpu ms: process CPU per message (bot and stub thread together); on a busy machine")
    print("the client's per-request CPU (~3-5 ms each, serial) is what pushes ratios up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="measured runs per cell (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    result = asyncio.run(run(max(1, args.reps)))
    if args.json:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
