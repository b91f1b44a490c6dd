"""Helpers for the best-of-N tests: route stub requests, read judge prompts, build policies.

The stub answers candidates by their model name (``[pipeline] models``) and
recognises judge and criteria calls by the JSON-schema name they request, so
one script serves a whole best-of-N decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import Config, parse_config
from bot.models import ModelProvider
from bot.policy_builder import PolicyBuilder
from middleware.policy import PipelinePolicy
from middleware.types import ChatRequest
from tests.stubs.openai_server import Recorded, Reply

_CANDIDATE = re.compile(r'<candidate label="([A-Z]+)">\n(.*?)\n</candidate>', re.DOTALL)
_REPLY = re.compile(r"<reply>\n(.*?)\n</reply>", re.DOTALL)


def schema_name(rec: Recorded) -> str | None:
    fmt = rec.body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def judge_labels(rec: Recorded) -> dict[str, str]:
    """Label -> candidate text, as the judge was shown them."""
    return dict(_CANDIDATE.findall(rec.text()))


def reply_under_review(rec: Recorded) -> str:
    found = _REPLY.search(rec.text())
    assert found, "criteria request without a <reply> block"
    return found.group(1)


def choose(containing: str, reason: str = "it is the best") -> Callable[[Recorded], Reply]:
    """A judge that picks whichever label shows the candidate containing ``containing``."""

    def judge(rec: Recorded) -> Reply:
        label = next(lab for lab, text in judge_labels(rec).items() if containing in text)
        return Reply(text=json.dumps({"choice": label, "reason": reason}))

    return judge


def scores_reply(scores: dict[str, int], reason: str = "scored") -> Reply:
    return Reply(text=json.dumps({"scores": scores, "reason": reason}))


@dataclass
class Router:
    """Stub script: candidates by model name, judge and criteria calls by schema name."""

    candidates: dict[str, Reply]
    judge: Callable[[Recorded], Reply] | None = None
    criteria: Callable[[Recorded], Reply] | None = None
    seen: list[str] = field(default_factory=list)

    def __call__(self, rec: Recorded) -> Reply:
        name = schema_name(rec)
        self.seen.append(name or rec.body.get("model", ""))
        if name == "judge_choice":
            assert self.judge is not None, "unexpected judge call"
            return self.judge(rec)
        if name == "criteria_scores":
            assert self.criteria is not None, "unexpected criteria call"
            return self.criteria(rec)
        return self.candidates[rec.body["model"]]

    @staticmethod
    def generation(recs: list[Recorded]) -> list[Recorded]:
        return [r for r in recs if schema_name(r) is None]

    @staticmethod
    def selection(recs: list[Recorded]) -> list[Recorded]:
        return [r for r in recs if schema_name(r) is not None]


def config_text(base_url: str, pipeline: str, extra: str = "", *, stream: bool = False) -> str:
    """A complete config.toml pointed at the stub."""
    return f"""
[llm]
provider = "openai"
model = "gen"
base_url = "{base_url}"
timeout_s = 5
max_retries = 0
stream = {"true" if stream else "false"}
system_prompt = "Be brief."

[pipeline]
{pipeline}

{extra}
"""


class Harness:
    """Config text -> the application's real PolicyBuilder -> a policy; closes clients after."""

    def __init__(self) -> None:
        self.providers: list[ModelProvider] = []

    def policy(self, text: str) -> tuple[Config, PipelinePolicy]:
        config = parse_config(text, "test config.toml")
        provider = ModelProvider(config.llm, env={"OPENAI_API_KEY": "sk-test"})
        self.providers.append(provider)
        return config, PolicyBuilder(provider).policy(config)

    async def close(self) -> None:
        for provider in self.providers:
            for model in list(provider._clients.values()):
                close = getattr(model, "close", None)
                if close is not None:
                    await close()


def request(text: str = "What is the capital of France?", **kw: str) -> ChatRequest:
    fields = {"platform": "test", "channel_id": "c1", "user_id": "u1", "message_id": "m1"} | kw
    return ChatRequest(text=text, **fields)  # type: ignore[arg-type]
