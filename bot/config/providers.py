"""Chooses and builds the chat models from `[llm]` and the environment.

``provider = "auto"`` picks the OpenAI-compatible client when an API key or a
``base_url`` is configured, and otherwise the offline echo model, with a
notice the console shows. Keys are read from the environment variable the
config names and never stored anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.config.schema import LLMConfig
from middleware.llm.echo import ECHO_NOTICE, EchoModel
from middleware.llm.model import ChatModel

if TYPE_CHECKING:  # `openai` takes a second or more to import: only when a server is used
    from openai import AsyncOpenAI


class ModelProvider:
    """Builds (and caches) one client per server, so connections are reused."""

    def __init__(
        self,
        llm: LLMConfig,
        env: Mapping[str, str] | None = None,
        *,
        fixed: ChatModel | None = None,
    ) -> None:
        self.llm = llm
        self.env = os.environ if env is None else env
        # A fixed model (scripted, function) answers every call: demos, replay, benchmarks.
        self.fixed = fixed
        self._clients: dict[str, AsyncOpenAI] = {}
        self._models: dict[tuple[str, str], ChatModel] = {}

    @property
    def api_key(self) -> str | None:
        return self.env.get(self.llm.api_key_env) or None

    @property
    def offline(self) -> bool:
        if self.fixed is not None:
            return False
        if self.llm.provider == "echo":
            return True
        if self.llm.provider == "openai":
            return False
        return not (self.api_key or self.llm.base_url)

    def notice(self) -> str | None:
        if self.offline:
            return ECHO_NOTICE
        if self.fixed is None and not self.api_key and self._needs_key():
            return (
                f'warning: [llm] provider = "{self.llm.provider}" but ${self.llm.api_key_env} '
                "is not set: OpenAI will refuse every model call (HTTP 401). Set it, or set "
                "[llm] base_url to a local server that needs no key"
            )
        return None

    def _needs_key(self) -> bool:
        """OpenAI itself needs a key; a local server (Ollama, vLLM, …) usually does not."""
        return not self.llm.base_url or "api.openai.com" in self.llm.base_url

    def default(self) -> ChatModel:
        return self(model=None, base_url=None)

    def __call__(self, *, model: str | None = None, base_url: str | None = None) -> ChatModel:
        """The ModelFactory used by LLM guards and judges (per-guard overrides allowed)."""
        if self.fixed is not None:
            return self.fixed
        if self.offline and not base_url:
            return EchoModel()
        name, url = model or self.llm.model, base_url or self.llm.base_url
        if (name, url) not in self._models:
            from middleware.llm.openai_model import OpenAIChatModel

            # One AsyncOpenAI client (one connection pool) per server, shared by every
            # model name on it, so a rarely used judge keeps warm connections too.
            self._models[(name, url)] = OpenAIChatModel(
                model=name, api_key=None, client=self._client(url), stream=self.llm.stream
            )
        return self._models[(name, url)]

    def _client(self, url: str) -> AsyncOpenAI:
        if url not in self._clients:
            from middleware.llm.openai_model import build_client

            self._clients[url] = build_client(
                api_key=self.api_key,
                base_url=url,
                max_retries=self.llm.max_retries,
                transport=self.llm.transport,
            )
        return self._clients[url]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._models.clear()

    def openai_client(self, base_url: str | None = None) -> AsyncOpenAI | None:
        """The raw AsyncOpenAI client (for endpoints beyond chat, e.g. moderations)."""
        if self.fixed is not None or (self.offline and not base_url):
            return None
        return self._client(base_url or self.llm.base_url)
