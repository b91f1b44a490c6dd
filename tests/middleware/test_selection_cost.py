"""What best-of-N costs: per-candidate settings, tokens and prices per decision.

Over HTTP against the stub: candidates get their configured temperatures and
models, every candidate and judge call records its tokens, and the `[pricing]`
table turns them into the decision's cost (dated model snapshots included).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from middleware.errors import SelectionConfigError
from middleware.llm.echo import EchoModel
from middleware.pipeline.run import Pipeline
from middleware.selection import build_selector
from tests.stubs.openai_server import Reply, StubOpenAI
from tests.support.selection_support import Harness, Router, config_text, request

PRICING = """
[pricing.cand-a]
input_per_m = 1.0
output_per_m = 2.0

[pricing.cand-b]
input_per_m = 1.0
output_per_m = 2.0

[pricing.judge]
input_per_m = 10.0
output_per_m = 20.0
"""


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.close()


async def test_every_call_records_tokens_and_decision_cost(
    stub_llm: StubOpenAI, harness: Harness
) -> None:
    stub_llm.script = Router(
        {
            name: Reply(f"answer {name}", tokens_in=100, tokens_out=5)
            for name in ("cand-a", "cand-b", "cand-c")
        },
        # The provider answers with a dated snapshot of the priced model.
        judge=lambda _r: Reply(
            json.dumps({"choice": "A", "reason": "ok"}),
            tokens_in=400,
            tokens_out=20,
            model="judge-2024-07-18",
        ),
    )
    pipeline = 'best_of = 3\nmodels = ["cand-a", "cand-b", "cand-c"]\njudge_model = "judge"'
    _, policy = harness.policy(config_text(stub_llm.base_url, pipeline, PRICING))

    decision = await Pipeline().run(request(), policy)

    calls = [(c.purpose, c.model, c.tokens_in, c.tokens_out) for c in decision.llm_calls]
    assert sorted(calls) == [
        ("generation", "cand-a", 100, 5),
        ("generation", "cand-b", 100, 5),
        ("generation", "cand-c", 100, 5),  # not in the price table: tokens count, cost 0
        ("selection", "judge-2024-07-18", 400, 20),
    ]
    assert (decision.tokens_in, decision.tokens_out) == (700, 35)
    expected = 2 * (100 * 1.0 + 5 * 2.0) / 1e6 + (400 * 10.0 + 20 * 20.0) / 1e6
    assert decision.cost_usd == pytest.approx(expected)
    assert [c.tokens_in for c in decision.candidates] == [100, 100, 100]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("temperatures = [0.3, 0.7]", [0.3, 0.7, 0.3, 0.7]),
        ("temperatures = 0.2", [0.2, 0.2, 0.2, 0.2]),
        ("", [0.7, 0.7, 0.7, 0.7]),  # [llm] temperature for all
    ],
)
async def test_candidates_get_configured_temperatures_and_models(
    stub_llm: StubOpenAI, harness: Harness, line: str, expected: list[float]
) -> None:
    stub_llm.script = lambda rec: Reply(f"t={rec.body.get('temperature')}")
    pipeline = f'best_of = 4\nselection = "vote"\nmodels = ["m1", "m2"]\n{line}'
    _, policy = harness.policy(config_text(stub_llm.base_url, pipeline))

    decision = await Pipeline().run(request(), policy)

    by_index = sorted(decision.candidates, key=lambda c: c.index)
    assert [c.temperature for c in by_index] == expected
    assert [c.model for c in by_index] == ["m1", "m2", "m1", "m2"]
    sent = sorted((r.body["model"], r.body["temperature"]) for r in stub_llm.chat_requests())
    assert sent == sorted(zip(["m1", "m2", "m1", "m2"], expected, strict=True))


async def test_vote_costs_no_extra_tokens(stub_llm: StubOpenAI, harness: Harness) -> None:
    stub_llm.script = lambda _r: Reply("42", tokens_in=50, tokens_out=1)
    _, policy = harness.policy(config_text(stub_llm.base_url, 'best_of = 5\nselection = "vote"'))

    decision = await Pipeline().run(request("6 times 7?"), policy)

    assert decision.reply == "42" and decision.selection is not None
    assert decision.selection.confidence == 1.0
    assert [c.purpose for c in decision.llm_calls] == ["generation"] * 5
    assert decision.tokens_in + decision.tokens_out == 5 * 51


JUDGE = EchoModel()  # the selectors are cached per model object: one for every test here
BOUND: dict[str, Any] = {"model": JUDGE, "timeout_s": 5.0}


def test_selector_factory_is_cached_by_plain_values() -> None:
    a = build_selector(
        method="criteria", criteria=("accuracy", "tone"), weights={"tone": 2}, **BOUND
    )
    b = build_selector(
        method="criteria", criteria=["accuracy", "tone"], weights={"tone": 2.0}, **BOUND
    )
    c = build_selector(method="criteria", criteria=("accuracy",), **BOUND)
    d = build_selector(method="criteria", criteria=("accuracy",), model=JUDGE, timeout_s=9.0)
    assert a is b and a is not c and c is not d
    assert repr(build_selector(method="vote", on_low_confidence="fallback", **BOUND)) == (
        "FallbackChain(vote -> judge -> first)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "best"}, "unknown selection 'best'"),
        ({"method": "criteria", "criteria": ()}, "at least one criterion"),
        ({"method": "criteria", "weights": {"speed": 1}}, "unknown criteria: speed"),
        ({"method": "criteria", "weights": {"tone": -1}}, "finite and >= 0: tone"),
        ({"method": "criteria", "criteria": ("a",), "weights": {"a": 0}}, "all zero"),
        ({"method": "criteria", "criteria": ("a", "a")}, "unique"),
    ],
)
def test_selector_factory_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SelectionConfigError, match=message):
        build_selector(**kwargs, **BOUND)
