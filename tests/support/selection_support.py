"""Helpers for the best-of-N tests: route stub requests, read judge prompts, build policies.

The stub answers candidates by their model name (``[pipeline] models``) and
recognises judge and criteria calls by the JSON-schema name they request, so
one script serves a whole best-of-N decision. :class:`Race` makes "which
candidate was faster" a decision of the test, not of the machine's load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.config.policies import PolicyBuilder
from bot.config.providers import ModelProvider
from bot.config.schema import Config, parse_config
from middleware.llm.model import ChatModel, Completion, Message, ModelSettings
from middleware.pipeline.policy import PipelinePolicy
from middleware.pipeline.run import Pipeline
from middleware.types import ChatRequest, Decision
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

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


class Observed:
    """The policy's real chat model, plus an event per model name set when a reply is returned.

    The pipeline measures a candidate's latency around ``complete``; the event is
    set inside that window, just before the reply goes back, and the pipeline
    stops the clock without yielding in between. So once a test has seen the
    event, that candidate's latency is fixed.
    """

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.offline = inner.offline
        self.returned: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        completion = await self.inner.complete(messages, settings=settings)
        self.returned[settings.model or self.name].set()
        return completion

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class Race:
    """Candidates finish in the order the test releases them, whatever the machine's load.

    Each candidate's stub reply waits on its own ``hold`` event. :meth:`release`
    sets it and waits until the stub has answered (its record is ``completed``)
    and the pipeline has the reply (:class:`Observed`), so anything released
    afterwards finishes strictly later. Latency is measured from each
    candidate's own start and candidates start in index order, so a test that
    needs candidate X to be *measured* faster than Y releases X first and gives
    X the higher index: then X started no earlier and finished earlier.
    """

    def __init__(self, stub: StubOpenAI) -> None:
        self.stub = stub
        self.holds: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.observed: Observed | None = None

    def reply(self, model: str, text: str = "ok", **kw: Any) -> Reply:
        """A candidate's reply that waits for :meth:`release`."""
        return Reply(text, hold=self.holds[model], **kw)

    def watch(self, policy: PipelinePolicy) -> PipelinePolicy:
        """The same policy with its chat model wrapped in :class:`Observed`."""
        self.observed = Observed(policy.model)
        return dataclasses.replace(policy, model=self.observed)

    async def record(self, model: str) -> Recorded:
        """The stub's record of the (first) request for ``model``, once it has arrived."""
        while True:
            found = [r for r in self.stub.chat_requests() if r.body.get("model") == model]
            if found:
                return found[0]
            self.stub.request_seen.clear()
            await self.stub.request_seen.wait()

    async def release(self, *models: str) -> None:
        """Let these candidates answer together; return once the pipeline has every reply."""
        assert self.observed is not None, "watch() the policy first"
        for model in models:
            self.holds[model].set()
        async with asyncio.timeout(5):
            for model in models:
                await self.observed.returned[model].wait()
                rec = await self.record(model)
                assert rec.outcome == "completed", (model, rec.outcome)

    async def run(self, policy: PipelinePolicy, *order: Sequence[str]) -> Decision:
        """Run the pipeline on :func:`request`, releasing candidates group by group in ``order``.

        Candidates never released stay held (and are cancelled or time out).
        """
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(Pipeline().run(request(), self.watch(policy)))
            for group in order:
                await self.release(*group)
        return task.result()
