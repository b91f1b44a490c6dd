"""Shared parts of the LLM guard tests: models on the stub server, contexts, runs.

The guard tests (ordinary verdicts in test_guards_llm, hostile and broken servers
in test_guards_hostile) build guards through the real registry with models that
are the real ``openai`` client pointed at the stub on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import Any

from middleware.guards.config import GuardConfigBase, LLMJudgeGuardConfig
from middleware.guards.guard import Guard, GuardContext
from middleware.guards.openai_moderation import OpenAIModeration
from middleware.guards.runner import run_guard
from middleware.llm.model import ChatModel
from middleware.llm.openai_model import OpenAIChatModel
from middleware.types import ChatRequest, Stage, Verdict
from tests.stubs.openai_server import Recorded

SAFE = '{"unsafe": false, "category": "none", "score": 0.02, "reason": "benign"}'
UNSAFE = '{"unsafe": true, "category": "violence", "score": 0.97, "reason": "a threat"}'


class StubFactory:
    """A ModelFactory whose models talk to the stub; closes every client afterwards.
    ``stream``: the models read every reply as a stream (``[llm] stream = true``)."""

    def __init__(self, base_url: str, *, stream: bool = False) -> None:
        self.base_url = base_url
        self.stream = stream
        self.made: list[OpenAIChatModel] = []

    def __call__(self, *, model: str | None = None, base_url: str | None = None) -> ChatModel:
        chat = OpenAIChatModel(
            model=model or "default-model",
            api_key=None,
            base_url=self.base_url,
            max_retries=0,
            stream=self.stream,
        )
        self.made.append(chat)
        return chat

    def moderation_client(self, *, base_url: str | None = None) -> OpenAIModeration:
        return OpenAIModeration(self(base_url=base_url).client)  # type: ignore[attr-defined]

    async def close(self) -> None:
        for chat in self.made:
            await chat.close()


def ctx(stage: Stage = Stage.INPUT, prompt: str = "hello") -> GuardContext:
    return GuardContext(stage, ChatRequest(platform="test", text=prompt))


def screened(rec: Recorded) -> str:
    """The text the judge was asked about (decoded from the quoted JSON payload)."""
    user = rec.body["messages"][-1]["content"]
    return str(json.loads(user[user.index("{") :])["text"])


def judge(**kw: Any) -> LLMJudgeGuardConfig:
    return LLMJudgeGuardConfig(name="judge", kind="llm_judge", model="judge-model", **kw)


async def check(guard: Guard, cfg: GuardConfigBase, text: str, **kw: Any) -> Verdict:
    return await run_guard(guard, cfg, text, ctx(**kw))
