"""The offline model: answers without a key or a network, and says so.

It lets `guardbot chat` run on a fresh machine through the full pipeline
(guards, logging, admin) so people can try the bot before wiring a provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence

from middleware.llm.model import Completion, Delta, Message, ModelSettings

ECHO_NOTICE = (
    "offline echo model in use: no OPENAI_API_KEY or [llm] base_url is set, "
    "so replies repeat your message"
)


class EchoModel:
    name = "echo"
    offline = True  # it only repeats the message: it cannot judge anything

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        started = time.perf_counter()
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = f"(echo) {last}"
        return Completion(
            text=text,
            model=self.name,
            tokens_in=sum(len(m.content.split()) for m in messages),
            tokens_out=len(text.split()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        """The echo a word at a time, so the offline bot shows streaming as a model would."""
        completion = await self.complete(messages, settings=settings)
        for word in re.findall(r"\S+\s*|\s+", completion.text):
            yield word
        yield completion
