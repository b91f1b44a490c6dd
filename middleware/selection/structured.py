"""Shared plumbing for the LLM-backed selectors: one guarded call, tagged blocks.

The judge and the criteria scorer both ask a model for JSON that follows a
schema (``response_format``), and neither may trust what comes back: servers
that ignore the schema, truncated replies, prose, duplicate keys and NaN all
have to become a clear :class:`~middleware.errors.VerdictParseError` (from the
one strict parser, :func:`middleware.llm.model.strict_json_object`) that the
fallback chain records, never an exception that reaches the pipeline. A model
call that fails or times out becomes an ``LLMCall`` with its error. Candidate texts are put
in tagged blocks whose closing tag they cannot forge, so a hostile reply cannot
pose as the end of its block.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from middleware.errors import LLMError
from middleware.llm.model import ChatModel, Completion, Message, ModelSettings
from middleware.types import ChatRequest, LLMCall

RAW_IN_REASON = 200  # how much of a bad reply the audit reasoning quotes


def quote(text: str) -> str:
    """A short, single-line excerpt of a bad reply for the audit trail."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= RAW_IN_REASON else flat[:RAW_IN_REASON] + "…")


def block(tag: str, text: str, max_chars: int, **attrs: str) -> str:
    """``<tag a="b">text</tag>`` where ``text`` cannot close the block early."""
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[… truncated, {len(text) - max_chars} more characters]"
    # Neutralise any closing (or opening) tag of our own kind inside the text.
    text = text.replace(f"</{tag}", f"&lt;/{tag}").replace(f"<{tag}", f"&lt;{tag}")
    rendered = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<{tag}{rendered}>\n{text}\n</{tag}>"


def conversation(request: ChatRequest, max_chars: int) -> str:
    """The user's message (with recent history) as the judges see it."""
    parts = [block("turn", t.content, max_chars, role=t.role) for t in request.history[-4:]]
    parts.append(block("user_message", request.text, max_chars))
    return "\n".join(parts)


async def call_model(
    model: ChatModel,
    messages: Sequence[Message],
    settings: ModelSettings,
) -> tuple[Completion | None, LLMCall]:
    """One selection call under a timeout; failures become an ``LLMCall`` with ``error``."""
    began = time.perf_counter()
    name = settings.model or model.name
    error: str
    try:
        async with asyncio.timeout(settings.timeout_s):
            completion = await model.complete(messages, settings=settings)
    except TimeoutError:
        error = f"timed out after {settings.timeout_s:g}s"
    except LLMError as exc:
        error = str(exc)
    except Exception as exc:  # a broken judge must not take the reply down with it
        error = f"model call failed: {type(exc).__name__}"
    else:
        return completion, LLMCall(
            purpose="selection",
            model=completion.model or name,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_ms=round((time.perf_counter() - began) * 1000, 3),
        )
    latency_ms = round((time.perf_counter() - began) * 1000, 3)
    return None, LLMCall(purpose="selection", model=name, latency_ms=latency_ms, error=error)
