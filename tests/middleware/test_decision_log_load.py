"""200 concurrent conversations through the real pipeline, openai client and stub server.

Every conversation sends three messages one after another, each with its
history read back from the log, so reads and group-committed writes overlap
all the time. Nothing may be lost, no "database is locked" may surface, and
all of it goes through the one writer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from middleware.decision_log import DecisionLog
from middleware.guards.config import MaxLengthGuardConfig
from middleware.guards.max_length import MaxLengthGuard
from middleware.llm.openai_model import OpenAIChatModel
from middleware.pipeline.policy import ConfiguredGuard, PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.types import Action, ChatRequest
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

CONVERSATIONS = 200
TURNS = 3


def echo_count(req: Recorded) -> Reply:
    messages = req.body.get("messages") or []
    return Reply(text=f"answer to {messages[-1]['content']} with {len(messages)} messages")


@pytest.mark.timeout(120)
async def test_two_hundred_conversations_lose_nothing(
    tmp_path: Path, stub_llm: StubOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    stub_llm.script = echo_count
    model = OpenAIChatModel(
        model="stub-model", api_key="sk-test", base_url=stub_llm.base_url, max_retries=0
    )
    cfg = MaxLengthGuardConfig(name="length", kind="max_length", stage="both", max_chars=4000)
    policy = PipelinePolicy(
        model=model, guards=(ConfiguredGuard(cfg, MaxLengthGuard(cfg)),), system_prompt=""
    )
    log = await DecisionLog.open(tmp_path / "load.db")
    pipeline = Pipeline()
    posted: list[str] = []

    async def conversation(n: int) -> None:
        for turn in range(TURNS):
            history = await log.history("load", "C", f"T{n}", max_turns=10, max_chars=10_000)
            assert len(history) == 2 * turn  # every earlier exchange was committed and read
            request = ChatRequest(
                platform="load", channel_id="C", thread_id=f"T{n}", user_id=f"U{n}",
                text=f"c{n} t{turn}", history=tuple(history),
            )  # fmt: skip
            decision = await pipeline.run(request, policy)
            assert decision.action is Action.REPLIED, decision.error
            await log.record(decision)
            posted.append(decision.id)
            await log.record_delivery(decision.id, "sent", None)

    caplog.set_level(logging.WARNING)
    try:
        async with asyncio.TaskGroup() as tg:
            for n in range(CONVERSATIONS):
                tg.create_task(conversation(n))
        stats = log.writer_stats
        stored = await log.query(limit=10 * CONVERSATIONS * TURNS)
        report = await log.verify()
    finally:
        await log.close()
        await model.close()
    total = CONVERSATIONS * TURNS
    assert len(posted) == total and {d.id for d in stored} == set(posted)
    assert all(d.delivery.status == "sent" for d in stored)
    assert stats.failed_batches == 0 and stats.decisions == total
    assert stats.jobs == 2 * total  # every decision and delivery went through the one writer
    assert stats.batches < stats.jobs  # concurrent writes shared commits
    assert report.ok and report.counts["decision"] == total
    assert "locked" not in caplog.text
    # The model saw each conversation's history: system-less, 1, 3, then 5 messages.
    counts = sorted(len(r.body["messages"]) for r in stub_llm.chat_requests())
    assert counts == [1] * CONVERSATIONS + [3] * CONVERSATIONS + [5] * CONVERSATIONS
