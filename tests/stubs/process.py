"""Run the OpenAI-compatible stub in its own process, for benchmarks.

A stub on a thread of the measured process competes with it for the GIL and
inflates its latency; in a separate process it only costs the other core.
Scenarios are named functions in this module (picklable by name), and the
records are fetched back over HTTP from ``/_records``.

    python -m tests.stubs.process SCENARIO [ARG ...]   # prints the base URL
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.stubs.openai_server import Recorded, Reply, Script, StubOpenAI

SAFE = '{"unsafe": false, "category": "none", "score": 0.02, "reason": "benign"}'
UNSAFE = '{"unsafe": true, "category": "violence", "score": 0.97, "reason": "threat"}'


def latency(gen_s: str, guard_s: str) -> Script:
    """Generation after gen_s; an llm_judge (model "guard-model") after guard_s."""

    def answer(rec: Recorded) -> Reply:
        if rec.body.get("model") == "guard-model":
            unsafe = "BLOCKME" in rec.text()
            return Reply(text=UNSAFE if unsafe else SAFE, delay_s=float(guard_s))
        return Reply(text="Here is a helpful and harmless answer.", delay_s=float(gen_s))

    return answer


SCENARIOS = {"latency": latency}


async def _serve(name: str, args: list[str]) -> None:
    stub = StubOpenAI(SCENARIOS[name](*args))
    await stub.start()
    print(stub.base_url, flush=True)
    await asyncio.Event().wait()


@contextmanager
def stub_process(name: str, *args: str) -> Iterator[str]:
    """Start the stub in a child process; yields its base URL."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs.process", name, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError("stub process did not start")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)


def fetch_records(base_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_records", timeout=10) as r:
        data: list[dict[str, Any]] = json.load(r)
    return data


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2:]))
