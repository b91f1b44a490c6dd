"""A bot-like process for the crash test: a stream of messages through the pipeline and log.

Run as ``python tests/support/decision_log_driver.py DB [CONVERSATIONS]``. Each
conversation sends messages one after another through the real pipeline (a
function model, a length guard) with its history read from the log, records
the decision and only then prints its id: a printed id is a reply that was
"posted". The first line, "ready", says the log is open. The test kills this
process with SIGKILL and checks every printed id is in the log.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from middleware.decision_log import DecisionLog  # noqa: E402
from middleware.guards.config import MaxLengthGuardConfig  # noqa: E402
from middleware.guards.max_length import MaxLengthGuard  # noqa: E402
from middleware.llm.model import Message, ModelSettings  # noqa: E402
from middleware.llm.scripted import FunctionModel  # noqa: E402
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy  # noqa: E402
from middleware.pipeline.run import Pipeline  # noqa: E402
from middleware.types import ChatRequest  # noqa: E402


def answer(messages: list[Message], _settings: ModelSettings) -> str:
    return f"reply to {messages[-1].content} after {len(messages) - 1} earlier messages"


async def conversation(n: int, log: DecisionLog, policy: PipelinePolicy) -> None:
    pipeline = Pipeline()
    turn = 0
    while True:
        turn += 1
        history = await log.history("crash", "C", f"T{n}", max_turns=6, max_chars=2000)
        request = ChatRequest(
            platform="crash", channel_id="C", thread_id=f"T{n}", user_id=f"U{n}",
            text=f"message {turn} of conversation {n}", history=tuple(history),
        )  # fmt: skip
        decision = await pipeline.run(request, policy)
        await log.record(decision)
        print(decision.id, flush=True)  # "posted": only after the commit
        await log.record_delivery(decision.id, "sent", None)


async def main(path: str, conversations: int) -> None:
    cfg = MaxLengthGuardConfig(name="length", kind="max_length", stage="both", max_chars=500)
    policy = PipelinePolicy(
        model=FunctionModel(answer, name="fn"),  # type: ignore[arg-type]
        guards=(ConfiguredGuard(cfg, MaxLengthGuard(cfg)),),
    )
    log = await DecisionLog.open(path)
    print("ready", flush=True)
    async with asyncio.TaskGroup() as tg:
        for n in range(conversations):
            tg.create_task(conversation(n, log, policy))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20))
