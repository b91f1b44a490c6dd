"""Screened streaming against its theoretical limits, and what users gain from it.

A streaming stub (the OpenAI-compatible test server, through the real
`openai` client) sends its first token after T ms and the whole reply by G ms,
in pieces of one sentence each. An input guard takes I ms; an output guard
takes O ms per chunk (plus the offline pii and secrets guards, redacting).
Measured from a recording view of every visible state:

- time to first visible text / (max(I, T + time to the first chunk) + O)
- time to the last visible text / (G + O): chunk screening overlaps generation
- first visible text with streaming vs. without (the whole screened reply)
- unscreened_chars: characters of any visible state that are not a prefix of
  the final screened reply (must be 0)

    python benchmarks/streaming.py [-n 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from middleware.guards.config import (  # noqa: E402
    MaxLengthGuardConfig,
    PIIGuardConfig,
    SecretsGuardConfig,
)
from middleware.guards.guard import GuardContext, verdict  # noqa: E402
from middleware.guards.pii import PIIGuard  # noqa: E402
from middleware.guards.secrets import SecretsGuard  # noqa: E402
from middleware.llm.openai_model import OpenAIChatModel  # noqa: E402
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy  # noqa: E402
from middleware.pipeline.run import Pipeline  # noqa: E402
from middleware.pipeline.streaming import StreamSettings  # noqa: E402
from middleware.types import Action, ChatRequest, Verdict  # noqa: E402
from tests.stubs.openai_server import Reply, StubOpenAI  # noqa: E402

T_MS, G_MS, I_MS, O_MS = 300, 2000, 400, 100
PIECES = 10
CHUNK_CHARS = 60
SENTENCE = "This sentence is one piece of the streamed reply, long enough. "  # > CHUNK_CHARS


class SleepGuard:
    """A remote guard that takes ``ms`` and allows (stands in for an LLM judge)."""

    local = False
    offline = False

    def __init__(self, name: str, ms: float) -> None:
        self.name = name
        self.seconds = ms / 1000

    async def check(self, text: str, context: GuardContext) -> Verdict:
        await asyncio.sleep(self.seconds)
        return verdict(self.name, context, unsafe=False)


class TimedView:
    """Every visible state with the time it appeared, from the request's start."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.states: list[tuple[float, str]] = []

    async def show(self, text: str) -> None:
        self.states.append(((time.perf_counter() - self.started) * 1000, text))

    async def retract(self, text: str) -> None:
        self.states.append(((time.perf_counter() - self.started) * 1000, text))


def unscreened_chars(states: list[str], final: str) -> int:
    bad = 0
    for state in states:
        common = next(
            (i for i, (a, b) in enumerate(zip(state, final, strict=False)) if a != b), None
        )
        bad += len(state) - (min(len(state), len(final)) if common is None else common)
    return bad


def policy(base_url: str) -> tuple[PipelinePolicy, OpenAIChatModel]:
    """Both runs read the model as a stream (``[llm] stream``): same T and G for both."""

    def cfg(name: str, stage: str) -> MaxLengthGuardConfig:
        return MaxLengthGuardConfig(kind="max_length", name=name, stage=stage)  # type: ignore[arg-type]

    pii = PIIGuardConfig(kind="pii", name="pii", stage="output", action="redact")
    secrets = SecretsGuardConfig(kind="secrets", name="secrets", stage="output", action="redact")
    guards = (
        ConfiguredGuard(cfg("input", "input"), SleepGuard("input", I_MS)),
        ConfiguredGuard(cfg("output", "output"), SleepGuard("output", O_MS)),
        ConfiguredGuard(pii, PIIGuard(pii)),
        ConfiguredGuard(secrets, SecretsGuard(secrets)),
    )
    model = OpenAIChatModel(
        model="stub", api_key=None, base_url=base_url, max_retries=0, stream=True
    )
    return PipelinePolicy(model=model, guards=guards, timeout_s=30), model


async def one(pipeline: Pipeline, pol: PipelinePolicy, streamed: bool) -> dict[str, float]:
    request = ChatRequest(platform="bench", channel_id="c", user_id="u", text="tell me")
    started = time.perf_counter()
    view = TimedView(started)
    settings = StreamSettings(chunk_chars=CHUNK_CHARS, context_chars=200, max_hold_ms=1000)
    if streamed:
        decision = await pipeline.run(request, pol, view=view, stream=settings)
    else:
        decision = await pipeline.run(request, pol)
        await view.show(decision.reply)  # the whole reply, shown once it is screened
    assert decision.action is Action.REPLIED, decision.error
    return {
        "first_ms": view.states[0][0],
        "last_ms": view.states[-1][0],
        "unscreened": unscreened_chars([s for _, s in view.states], decision.reply),
        "chunks": len(decision.stream.chunks) if decision.stream else 1,
    }


async def run(n: int) -> dict[str, float]:
    piece_ms = (G_MS - T_MS) / PIECES
    async with StubOpenAI(
        lambda _r: Reply(
            pieces=[SENTENCE] * PIECES, first_token_s=T_MS / 1000, delay_s=(G_MS - T_MS) / 1000
        )
    ) as stub:
        pol, model = policy(stub.base_url)
        pipeline = Pipeline()
        try:
            await one(pipeline, pol, True)  # warm-up: connection pool, regexes
            streamed = [await one(pipeline, pol, True) for _ in range(n)]
            whole = [await one(pipeline, pol, False) for _ in range(n)]
        finally:
            await model.close()
    first = statistics.median(r["first_ms"] for r in streamed)
    last = statistics.median(r["last_ms"] for r in streamed)
    whole_first = statistics.median(r["first_ms"] for r in whole)
    first_bound = max(I_MS, T_MS + piece_ms) + O_MS
    return {
        "t_ms": T_MS, "g_ms": G_MS, "i_ms": I_MS, "o_ms": O_MS, "runs": n,
        "chunks": statistics.median(r["chunks"] for r in streamed),
        "first_visible_ms": round(first, 1),
        "first_visible_bound_ms": round(first_bound, 1),
        "first_visible_ratio": round(first / first_bound, 3),
        "last_visible_ms": round(last, 1),
        "last_visible_ratio": round(last / (G_MS + O_MS), 3),
        "first_visible_unstreamed_ms": round(whole_first, 1),
        "first_visible_gain_ratio": round(whole_first / first, 2),
        "unscreened_chars": int(sum(r["unscreened"] for r in streamed + whole)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="streamed and whole replies each")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    result = asyncio.run(run(args.n))
    print(f"T={T_MS} ms, G={G_MS} ms, I={I_MS} ms, O={O_MS} ms per chunk, median of {args.n}")
    rows = [
        ("first visible text", result["first_visible_ms"], result["first_visible_bound_ms"],
         result["first_visible_ratio"], "<= 1.05"),
        ("last visible text", result["last_visible_ms"], G_MS + O_MS,
         result["last_visible_ratio"], "<= 1.05"),
        ("first visible, not streamed", result["first_visible_unstreamed_ms"],
         result["first_visible_ms"], result["first_visible_gain_ratio"], "(gain)"),
    ]  # fmt: skip
    print(f"{'':30} {'ms':>9} {'bound ms':>9} {'ratio':>7}")
    for name, ms, bound, ratio, goal in rows:
        print(f"{name:30} {ms:9.1f} {bound:9.1f} {ratio:7.3f} {goal}")
    print(f"unscreened characters shown: {result['unscreened_chars']} (must be 0)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
