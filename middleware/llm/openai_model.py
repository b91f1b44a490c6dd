"""Chat completions through the official `openai` client.

One class serves OpenAI and every OpenAI-compatible server (Ollama, vLLM,
llama.cpp, LM Studio) via ``base_url``. Cancelling :meth:`complete` closes the
HTTP request, which is how a blocking input guard stops the provider from
producing (and billing) more tokens. With ``stream=True`` the reply arrives
as chunks, so cancellation stops it between tokens.

The client reaches the server through aiohttp (:mod:`middleware.llm.transport`)
rather than its default httpx transport: same auth, retries, errors and
streaming, a fraction of the client CPU per call (``benchmarks/http_overhead.py``).
``transport="httpx"`` (config ``[llm] transport``) goes back to the default.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from openai._models import FinalRequestOptions
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from middleware.errors import LLMError
from middleware.llm.model import Completion, Delta, Message, ModelSettings
from middleware.llm.openai_client import CALL_DEADLINE, BudgetedOpenAI, LeanOpenAI, RetryTooLate
from middleware.llm.transport import MAX_BODY_BYTES, AioHttpClient

BODY_CHARS = 200  # of a server's answer kept in the error (and so in the decision)
# What the server says about itself is stored with every decision: a count must fit a
# SQLite INTEGER (and be a count), a model name must be a short string, whatever it sent.
MAX_COUNT = 2**31 - 1
MODEL_NAME_CHARS = 200
# A streamed reply is kept whole (for its guards and the log): bounded as a plain reply
# is, whose text cannot be longer than its body (transport.MAX_BODY_BYTES).
MAX_REPLY_CHARS = MAX_BODY_BYTES
# The package's own JSON encoding of a body (``openai._utils._json.openapi_dumps``:
# compact, UTF-8, no NaN), made once instead of an encoder per call; bodies here are
# plain JSON, so its hooks for datetimes and pydantic models are never needed.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def describe_error(exc: BaseException) -> str:
    """An operator-facing description: the URL, the status, the start of the body and the
    likely fix. Never request headers or keys (the log masks secrets in bodies too)."""
    url = _url(exc)
    if isinstance(exc, RetryTooLate):
        if exc.status is None:
            return f"could not reach the model server ({url}); {exc}"
        body = f": {body_start(exc.body)}" if exc.body else ""
        return f"model server answered HTTP {exc.status} ({url}){body}; {exc}"
    if isinstance(exc, openai.APITimeoutError):
        return f"model request timed out ({url})"
    if isinstance(exc, openai.APIStatusError):
        body = exc.response.text
        return (
            f"model server answered HTTP {exc.status_code} ({url}): {body_start(body)}"
            f"{fix_hint(url, exc.status_code, body)}"
        )
    if isinstance(exc, openai.APIConnectionError):
        return f"could not reach the model server ({url})"
    if isinstance(exc, openai.APIResponseValidationError):
        return f"model server sent a malformed response ({url})"
    return f"model call failed: {type(exc).__name__}"


def _url(exc: BaseException) -> str:
    request = getattr(exc, "request", None)
    return f"POST {request.url}" if request is not None else "no request"


def body_start(body: str) -> str:
    """The start of a server's answer on one line, quoted: enough to recognise it."""
    flat = " ".join(body.split())
    if not flat:
        return "(empty body)"
    return repr(flat if len(flat) <= BODY_CHARS else flat[: BODY_CHARS - 1] + "…")


def fix_hint(url: str, status: int, body: str) -> str:
    """The usual cause of a 404 or an HTML page: a base_url without the API's /v1."""
    html = body.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    path = url.split("://", 1)[-1].partition("/")[2]
    if (status == 404 or html) and not path.startswith("v1/") and "/v1/" not in path:
        base = url.removeprefix("POST ").removesuffix("/chat/completions").removesuffix("/")
        return f'; did you mean base_url = "{base}/v1"?'
    return ""


def server_count(value: object) -> int:
    """A token count from the server as one that can be stored: 0..MAX_COUNT.

    A hostile or broken server may send 10**19, -5, 1e300, "12", null or true; a
    count that will not fit the log must not fail a decision after its reply was shown.
    """
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value  # the usual case, first
    if type(value) is float and math.isfinite(value):
        value = int(value)
    if type(value) is not int:  # bool (an int subclass), str, None, objects: not a count
        return 0
    return min(max(value, 0), MAX_COUNT)


def server_model_name(value: object, asked: str) -> str:
    """The model the server says answered, as a short plain string (else the one asked for)."""
    if type(value) is not str or not value:
        return asked
    return value[:MODEL_NAME_CHARS]


Transport = Literal["aiohttp", "httpx"]


def build_client(
    *, api_key: str | None, base_url: str | None, max_retries: int, transport: Transport = "aiohttp"
) -> AsyncOpenAI:
    """One AsyncOpenAI client (one connection pool) on the chosen HTTP transport."""
    http_client: httpx2.AsyncClient | None = None
    if transport == "aiohttp" and not urllib.request.getproxies():
        http_client = AioHttpClient()
    elif transport == "aiohttp":
        # Through a proxy (HTTPS_PROXY and the like): the package's own aiohttp client,
        # which reads them; the default transport if its `aiohttp` extra is missing.
        with contextlib.suppress(RuntimeError):
            http_client = openai.DefaultAioHttpClient()
    # On guardbot's transport, the client that builds a plain request once per kind.
    client_class = LeanOpenAI if isinstance(http_client, AioHttpClient) else BudgetedOpenAI
    return client_class(
        # Local servers (Ollama, llama.cpp) accept any key; the client insists on one.
        api_key=api_key or "not-needed",
        base_url=base_url or None,
        max_retries=max_retries,
        http_client=http_client,
    )


class OpenAIChatModel:
    offline = False

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        max_retries: int = 2,
        stream: bool = False,
        client: AsyncOpenAI | None = None,
        transport: Transport = "aiohttp",
        max_reply_chars: int = MAX_REPLY_CHARS,
    ) -> None:
        self.name = model
        self.max_reply_chars = max_reply_chars
        self.streamed = stream  # complete() reads the reply as a stream too
        self.client = client or build_client(
            api_key=api_key, base_url=base_url, max_retries=max_retries, transport=transport
        )
        self._url = str(self.client.base_url.join("chat/completions"))
        # What every call sends but its body and timeout, built once: ``client.post``
        # builds these typed options per call, deep-copying their defaults.
        self._options = FinalRequestOptions.construct(
            method="post", url=self._url, security={"bearer_auth": True}
        )

    async def close(self) -> None:
        await self.client.close()

    def _params(self, messages: Sequence[Message], settings: ModelSettings) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": settings.model or self.name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            params["max_tokens"] = settings.max_tokens
        if settings.response_format is not None:
            params["response_format"] = settings.response_format
        return params

    async def complete(self, messages: Sequence[Message], *, settings: ModelSettings) -> Completion:
        params = self._params(messages, settings)
        started = time.perf_counter()
        try:
            if self.streamed:
                return await self._complete_streaming(params, settings.timeout_s)
            response = await self._post(params, settings.timeout_s)
            data = self._json(response)
            choices = data.get("choices")
            if not choices:
                raise LLMError(
                    f"model server returned no choices (POST {self._url}): "
                    f"{body_start(response.text)}"
                )
            text = choices[0]["message"]["content"] or ""
            usage = data.get("usage")
            if not isinstance(usage, dict):
                usage = {}
        except openai.OpenAIError as exc:
            raise LLMError(describe_error(exc)) from exc
        except UnicodeEncodeError as exc:  # a ValueError, but raised before anything was sent
            raise LLMError(
                "the request was not sent: its text cannot be encoded as UTF-8 (a lone surrogate)"
            ) from exc
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            # Not JSON, or not in the API's shape: the server answered, but not sensibly.
            raise LLMError(f"model server sent a malformed response (POST {self._url})") from exc
        return Completion(
            text=str(text),
            model=server_model_name(data.get("model"), params["model"]),
            tokens_in=server_count(usage.get("prompt_tokens")),
            tokens_out=server_count(usage.get("completion_tokens")),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _json(self, response: httpx2.Response) -> Any:
        """The body as JSON, or an LLMError saying what came instead (an HTML page, say)."""
        try:
            data = json.loads(response.content)
        except ValueError:
            body = response.text
            html = "html" in response.headers.get("content-type", "") or body.lstrip()[:1] == "<"
            what = "answered" if html else "sent a malformed response:"
            kind = "an HTML page, not JSON" if html else "a body that is not JSON"
            raise LLMError(
                f"model server {what} HTTP {response.status_code} with {kind} "
                f"(POST {self._url}): {body_start(body)}"
                f"{fix_hint(f'POST {self._url}', response.status_code, body)}"
            ) from None
        if not isinstance(data, dict):
            raise LLMError(f"model server sent a malformed response (POST {self._url})")
        return data

    async def _post(self, body: dict[str, Any], timeout_s: float, *, stream: bool = False) -> Any:
        """POST /chat/completions through the client (auth, retries, errors).

        Cheaper than the typed ``chat.completions.create`` on every message's
        critical path: that walks the type hints of every parameter to transform
        a body that is already plain JSON, and builds a pydantic ChatCompletion
        of which four fields are read. Here the client's ``request`` (what
        ``client.post`` calls) gets a copy of the prepared options and returns the
        raw response (after its status checks and retries), and the JSON is read
        directly; the URL is absolute, so the client does not re-merge it with its
        base URL. A stream is still parsed by the client into chunks.
        """
        # Encoded here: as bytes the client sends it as it is (and LeanOpenAI reuses
        # the rest of the request); a lone surrogate fails here, before anything is sent.
        data = _encode_json(body).encode()
        options = self._options.model_copy(update={"json_data": data, "timeout": timeout_s})
        # The caller times the call out after timeout_s too: no retry may start after it.
        deadline = CALL_DEADLINE.set(time.perf_counter() + timeout_s)
        try:
            return await self.client.request(
                # A stream keeps the typed cast: with the raw one the client would not
                # parse it into stream_cls chunks.
                ChatCompletion if stream else httpx2.Response,
                options,
                stream=stream,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
        finally:
            CALL_DEADLINE.reset(deadline)

    async def stream(
        self, messages: Sequence[Message], *, settings: ModelSettings
    ) -> AsyncIterator[Delta]:
        """Text pieces as the server sends them, then the Completion (with usage).

        Cancelling the reader (or closing this iterator) closes the HTTP stream,
        so the provider stops generating. A stream that breaks off mid-reply (a
        reset connection, a truncated body, a stall past the timeout) is an
        :class:`LLMError` after the pieces already yielded, saying how many
        characters had arrived, with them as its ``raw``.
        """
        try:
            async for delta in self._deltas(self._params(messages, settings), settings.timeout_s):
                yield delta
        except openai.OpenAIError as exc:
            raise LLMError(describe_error(exc)) from exc
        except UnicodeEncodeError as exc:
            raise LLMError(
                "the request was not sent: its text cannot be encoded as UTF-8 (a lone surrogate)"
            ) from exc
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            # Chunks not in the API's shape.
            raise LLMError(
                f"model server sent a malformed stream (POST {self._url}): {type(exc).__name__}"
            ) from exc

    async def _complete_streaming(self, params: dict[str, Any], timeout_s: float) -> Completion:
        async for delta in self._deltas(params, timeout_s):
            if isinstance(delta, Completion):
                return delta
        raise LLMError(f"model stream ended without a reply (POST {self._url})")

    async def _deltas(self, params: dict[str, Any], timeout_s: float) -> AsyncIterator[Delta]:
        started = time.perf_counter()
        body = {**params, "stream": True, "stream_options": {"include_usage": True}}
        stream = await self._post(body, timeout_s, stream=True)
        parts: list[str] = []
        size = 0
        tokens_in = tokens_out = 0
        model = None
        try:
            async for chunk in stream:
                model = chunk.model or model
                # Chunks are built without validation: usage may be anything the server sent.
                if isinstance(chunk.usage, CompletionUsage):
                    tokens_in = server_count(chunk.usage.prompt_tokens)
                    tokens_out = server_count(chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        piece = choice.delta.content
                        size += len(piece)
                        if size > self.max_reply_chars:
                            raise LLMError(
                                f"model server streamed a reply over {self.max_reply_chars:,} "
                                f"characters, more than the client keeps (POST {self._url})"
                            )
                        parts.append(piece)
                        yield piece
        except (openai.APIConnectionError, OSError) as exc:  # a read timeout is one too
            how = "timed out" if isinstance(exc, openai.APITimeoutError) else "broke off"
            raise LLMError(
                f"the model stream {how} after {size:,} characters (POST {self._url})",
                raw="".join(parts),
            ) from exc
        finally:
            # Closing the stream closes the connection, on cancellation too.
            await stream.close()
        text = "".join(parts)
        if not tokens_out and text:
            tokens_out = len(text.split())  # server sent no usage: estimate
        yield Completion(
            text=text,
            model=server_model_name(model, params["model"]),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
