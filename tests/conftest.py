"""Shared fixtures: the OpenAI-compatible stub server on 127.0.0.1, and models for LLM
guards on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.stubs.openai_server import StubOpenAI
from tests.support.guard_support import StubFactory


@pytest.fixture
async def stub_llm() -> AsyncIterator[StubOpenAI]:
    async with StubOpenAI() as stub:
        yield stub


@pytest.fixture
async def factory(stub_llm: StubOpenAI) -> AsyncIterator[StubFactory]:
    """Models for LLM guards on the stub (one client per model and base URL)."""
    made = StubFactory(stub_llm.base_url)
    yield made
    await made.close()
