"""Shared fixtures: the OpenAI-compatible stub server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.stubs.openai_server import StubOpenAI


@pytest.fixture
async def stub_llm() -> AsyncIterator[StubOpenAI]:
    async with StubOpenAI() as stub:
        yield stub
