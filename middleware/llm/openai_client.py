"""The `openai` client guardbot uses, built once per server by ``build_client``.

:class:`BudgetedOpenAI` keeps the package's retries (which statuses, how long
to wait: its ``Retry-After`` handling and backoff) but will not start a wait
that ends after the call's time is up (:data:`CALL_DEADLINE`): the caller's
timeout would fire during the sleep and say only "timed out", losing the HTTP
429 or 503 that caused it. The call fails at once with that status instead.

:class:`LeanOpenAI` is the `openai` client on guardbot's aiohttp transport
(:mod:`middleware.llm.transport`) with the per-call work that gives the same
answer every call done once: the headers (auth, platform, retry count, read
timeout), the URL and the timeout of a plain POST of ready JSON bytes are built
by the package itself on first use and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import httpx2
from openai import AsyncOpenAI, OpenAIError
from openai._models import FinalRequestOptions

from middleware.llm.transport import KeptHeaders

_Built = tuple[httpx2.URL, httpx2.Headers, list[tuple[str, str]], dict[str, Any]]
# When the current task's model call must be over, on time.perf_counter()'s clock (the
# caller's own timeout for it). Set and reset around a call; a retry starts only while
# it can start before then. Unset: the package's retries as they are.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("guardbot_call_deadline", default=None)
_log = logging.getLogger("openai._base_client")  # where the package logs its retries


class RetryTooLate(OpenAIError):
    """A failed attempt the package would retry, after a wait the call has no time for.

    ``status`` is the HTTP status of the failed attempt (None: it got no answer;
    the transport error is the ``__cause__``); ``body`` the start of its answer
    when it was read.
    """

    def __init__(
        self,
        request: httpx2.Request | None,
        status: int | None,
        body: str,
        wait_s: float,
        left_s: float,
    ) -> None:
        super().__init__(
            f"not retried: the retry would wait {wait_s:.3g}s and the call has {left_s:.2g}s left"
        )
        self.request = request
        self.status = status
        self.body = body
        self.wait_s = wait_s
        self.left_s = left_s


class BudgetedOpenAI(AsyncOpenAI):
    """``AsyncOpenAI`` whose retries end within the call's :data:`CALL_DEADLINE`.

    Private: overrides ``_sleep_for_retry(*, retries_taken, max_retries, options,
    response)`` of openai 3.x, which its retry loop awaits before each retry (from
    inside the ``except`` of the failed attempt), and asks the package's own
    ``_calculate_retry_timeout`` for the wait; a test checks both signatures.
    """

    @property
    def user_agent(self) -> str:
        # The package names the class here: servers see the client they always saw.
        return super().user_agent.replace(type(self).__name__, AsyncOpenAI.__name__, 1)

    async def _sleep_for_retry(
        self,
        *,
        retries_taken: int,
        max_retries: int,
        options: FinalRequestOptions,
        response: httpx2.Response | None,
    ) -> None:
        headers = response.headers if response is not None else None
        wait_s = self._calculate_retry_timeout(max_retries - retries_taken, options, headers)
        deadline = CALL_DEADLINE.get()
        left_s = 0.0 if deadline is None else deadline - time.perf_counter()
        if deadline is not None and wait_s >= left_s:
            failed = sys.exception()  # the attempt's error: a status or a transport error
            raise _too_late(failed, response, wait_s, left_s) from failed
        # The package's own wait, as its _sleep_for_retry logs and sleeps it (one sample
        # of its jitter: the one checked above).
        _log.info("Retrying request in %f seconds (retry %i of %s)", wait_s, retries_taken + 1,
                  max_retries)  # fmt: skip
        await asyncio.sleep(wait_s)


def _too_late(
    failed: BaseException | None, response: httpx2.Response | None, wait_s: float, left_s: float
) -> RetryTooLate:
    if response is None:  # no answer: a transport error, which names its request
        request = None
        if isinstance(failed, httpx2.RequestError):
            with contextlib.suppress(RuntimeError):  # httpx raises it when none was set
                request = failed.request
        return RetryTooLate(request, None, "", wait_s, left_s)
    try:
        body = response.text  # read for a plain reply; a stream's error body was not
    except httpx2.ResponseNotRead:
        body = ""
    return RetryTooLate(response.request, response.status_code, body, wait_s, left_s)


class LeanOpenAI(BudgetedOpenAI):
    """``AsyncOpenAI`` on :class:`AioHttpClient` that builds a plain request once per kind.

    Per call the package merges its default, auth and platform headers into a
    fresh case-insensitive ``Headers`` (each name and value normalised), parses
    and joins the URL, and the transport normalises the headers again: about
    two thirds of the CPU a call costs before aiohttp. For a plain POST of JSON
    already encoded to bytes (what :class:`~middleware.llm.openai_model.OpenAIChatModel`
    sends), only the body and its Content-Length differ between calls with the
    same URL, timeout and retry count, so the first such request is built by the
    package itself (``super()._build_request``) and its URL, headers and timeout
    are reused; anything else (query, files, extra headers or JSON, an
    idempotency header) takes the package's own path every time. Retries,
    auth, errors and the response are the package's as before.

    Private: overrides ``_build_request(options, *, retries_taken)`` of openai 3.x
    (pinned ``<4`` in pyproject.toml) and reads ``FinalRequestOptions`` fields;
    ``tests/middleware/test_llm_transport.py`` compares every field of what this
    builds with the package's own build, so a change there fails loudly.
    """

    _MAX_KINDS = 64  # URL x timeout x retry count x key: a handful per model in practice

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._built: dict[tuple[Any, ...], _Built] = {}

    def _build_request(
        self, options: FinalRequestOptions, *, retries_taken: int = 0
    ) -> httpx2.Request:
        body = options.json_data
        timeout = options.timeout
        plain = (
            isinstance(body, bytes)
            and isinstance(timeout, int | float)
            and options.method == "post"
            and not options.headers  # NotGiven or empty: nothing per call
            and not options.params
            and options.files is None
            and options.content is None
            and options.extra_json is None
            and self._idempotency_header is None
            and not self._custom_query  # default_query values may be lists: not a key
        )
        if not plain:
            return super()._build_request(options, retries_taken=retries_taken)
        assert isinstance(body, bytes)
        # Everything the package's headers and URL are made of that can change.
        kind = (
            options.url,
            type(timeout),  # 5 and 5.0: the read-timeout header prints them differently
            timeout,
            retries_taken,
            self.api_key,
            self.organization,
            self.project,
            self._platform,
            tuple(options.security.items()),
            # default_headers: fixed by the constructor, but a dict that could change after.
            tuple(self._custom_headers.items()),
        )
        built = self._built.get(kind)
        if built is None:
            built = self._first(kind, options, retries_taken)
        url, headers, wire, extensions = built
        request = httpx2.Request("POST", url, stream=httpx2.ByteStream(body), extensions=extensions)
        # The encoding found once for these headers: httpx would look for it again per request.
        kept = KeptHeaders(headers, encoding=headers.encoding)
        length = str(len(body))
        kept["Content-Length"] = length  # last, where the package puts it
        kept.wire = [*wire, ("content-length", length)]  # as multi_items() names it
        request.headers = kept
        request.read()  # the body as request.content, as a built request has it
        return request

    def _first(
        self, kind: tuple[Any, ...], options: FinalRequestOptions, retries_taken: int
    ) -> _Built:
        model = super()._build_request(options, retries_taken=retries_taken)
        headers = httpx2.Headers(model.headers)
        del headers["Content-Length"]  # the body's, set per call
        if len(self._built) >= self._MAX_KINDS:
            self._built.clear()
        built = (model.url, headers, headers.multi_items(), model.extensions)
        self._built[kind] = built
        return built
