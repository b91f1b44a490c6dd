"""Chooses and builds the chat models from `[llm]` and the environment.

``provider = "auto"`` picks the OpenAI-compatible client when an API key or a
``base_url`` is configured, and otherwise the offline echo model, with a
notice the console shows. Keys are read from the environment variable the
config names and never stored anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bot.config import LLMConfig
from middleware.llm.base import ChatModel
from middleware.llm.echo import ECHO_NOTICE, EchoModel
from middleware.llm.openai_model import OpenAIChatModel


class ModelProvider:
    """Builds (and caches) one client per server, so connections are reused."""

    def __init__(self, llm: LLMConfig, env: Mapping[str, str] | None = None) -> None:
        self.llm = llm
        self.env = os.environ if env is None else env
        self._clients: dict[tuple[str, str, bool], ChatModel] = {}

    @property
    def api_key(self) -> str | None:
        return self.env.get(self.llm.api_key_env) or None

    @property
    def offline(self) -> bool:
        if self.llm.provider == "echo":
            return True
        if self.llm.provider == "openai":
            return False
        return not (self.api_key or self.llm.base_url)

    def notice(self) -> str | None:
        return ECHO_NOTICE if self.offline else None

    def default(self) -> ChatModel:
        return self(model=None, base_url=None)

    def __call__(self, *, model: str | None = None, base_url: str | None = None) -> ChatModel:
        """The ModelFactory used by LLM guards and judges (per-guard overrides allowed)."""
        if self.offline and not base_url:
            return EchoModel()
        key = (model or self.llm.model, base_url or self.llm.base_url, self.llm.stream)
        if key not in self._clients:
            self._clients[key] = OpenAIChatModel(
                model=key[0],
                api_key=self.api_key,
                base_url=key[1] or None,
                max_retries=self.llm.max_retries,
                stream=self.llm.stream,
            )
        return self._clients[key]

    async def close(self) -> None:
        for client in self._clients.values():
            if isinstance(client, OpenAIChatModel):
                await client.close()
        self._clients.clear()

    def openai_client(self, base_url: str | None = None) -> object:
        """The raw AsyncOpenAI client (for endpoints beyond chat, e.g. moderations)."""
        model = self(model=None, base_url=base_url)
        if isinstance(model, OpenAIChatModel):
            return model.client
        return None
