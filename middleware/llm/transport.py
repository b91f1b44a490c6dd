"""The HTTP client under the `openai` client: httpx's interface, aiohttp's wire.

The `openai` package builds every request (auth, retry headers, idempotency
key), retries and maps errors itself, then hands an ``httpx2.Request`` to its
HTTP client's ``send``. Its own aiohttp option (``DefaultAioHttpClient``) keeps
the whole httpx client around the wire: the client's default headers merged
into every request, auth and redirect loops, event hooks, a transport adapter
and a byte-stream reader; together more client CPU per call than aiohttp
itself (``benchmarks/http_overhead.py``). :class:`AioHttpClient` keeps the two
methods the `openai` client calls and does them directly:

- ``build_request`` wraps the headers and body the `openai` client already
  prepared, for an absolute URL (what it always sends), and defers to httpx for
  anything else (query params, files, cookies);
- ``send`` makes one request on a shared aiohttp session (keep-alive pool) and
  reads a plain reply whole; a streamed one is read as the bytes arrive.

A reply is read up to a bound (:data:`MAX_BODY_BYTES` whole, :data:`MAX_STREAM_BYTES`
streamed): past it the call fails with an :class:`~middleware.errors.LLMError` naming
the limit, so a broken or hostile server cannot fill the bot's memory. The bound is
on the decoded bytes: a gzip or deflate reply (:data:`ACCEPT_ENCODING`, what the
client asks for) is decoded here as it arrives, never to more than the bound, since
255 KiB of gzip can decode to 256 MiB; any other Content-Encoding is refused.

Cancelling a call, or closing a stream before its end, closes the connection,
so the server sees the client hang up and stops generating. Transport errors
become httpx's (a timeout, a connect or read error), which the `openai` client
retries and reports as it does for its default transport. A request with its
own httpx ``auth`` (not used for API keys) goes through httpx's own path.

:class:`~middleware.llm.openai_client.LeanOpenAI` is the `openai` client that
builds the requests this transport sends.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx2
from openai import DEFAULT_CONNECTION_LIMITS, DEFAULT_TIMEOUT

from middleware.errors import LLMError

HTTP_1_1 = {"http_version": b"HTTP/1.1"}
# A chat completion or a verdict is kilobytes; 8 MiB is far past any real reply and
# small enough that reading one whole (as a plain reply is read) costs nothing to fear.
MAX_BODY_BYTES = 8 * 2**20
# A stream frames every few characters in ~200 bytes of JSON, so its bound is looser;
# it stops a server whose bytes never end an event (the SSE decoder buffers those).
MAX_STREAM_BYTES = 32 * MAX_BODY_BYTES
# The codings this transport decodes with a bound (zlib's max_length), asked for in every
# request: OpenAI's edge may compress a large reply; local servers rarely do. Not br or
# zstd, which aiohttp and httpx would offer when their optional packages are installed.
ACCEPT_ENCODING = "gzip, deflate"
UseClientDefault = type(httpx2.USE_CLIENT_DEFAULT)


class AioHttpClient(httpx2.AsyncClient):
    """``httpx2.AsyncClient`` for the `openai` client, sending through one aiohttp session."""

    def __init__(
        self, *, max_body_bytes: int = MAX_BODY_BYTES, max_stream_bytes: int = MAX_STREAM_BYTES
    ) -> None:
        limits = DEFAULT_CONNECTION_LIMITS
        # trust_env=False: the caller builds this client only when no proxy is set.
        super().__init__(
            timeout=DEFAULT_TIMEOUT,
            limits=limits,
            trust_env=False,
            headers={"Accept-Encoding": ACCEPT_ENCODING},  # for httpx's own build_request
        )
        self._limit = limits.max_connections or 0
        self._keepalive_s = limits.keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self.max_body_bytes = max_body_bytes
        self.max_stream_bytes = max_stream_bytes

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running loop.
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            keepalive_timeout=self._keepalive_s,  # None: aiohttp's default
            ssl=httpx2.create_ssl_context(),
        )
        # auto_decompress=False: a compressed body is decoded by send(), within its bound.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            headers={"Accept-Encoding": ACCEPT_ENCODING},  # not aiohttp's own list
        )
        return self._session

    def build_request(  # the parameters it does not read are passed on by name
        self,
        method: str,
        url: httpx2.URL | str,
        *,
        content: Any = None,
        headers: Any = None,
        timeout: Any = httpx2.USE_CLIENT_DEFAULT,
        extensions: Any = None,
        **others: Any,
    ) -> httpx2.Request:
        lean = (
            not any(value is not None for value in others.values())
            and extensions is None
            and isinstance(url, str)
            and url.startswith(("https://", "http://"))
        )
        if not lean:
            return super().build_request(
                method, url, content=content, headers=headers, timeout=timeout,
                extensions=extensions, **others,
            )  # fmt: skip
        timeout = self.timeout if isinstance(timeout, UseClientDefault) else timeout
        return httpx2.Request(
            method, url, content=content, headers=headers, extensions={"timeout": _as_dict(timeout)}
        )

    async def send(
        self,
        request: httpx2.Request,
        *,
        stream: bool = False,
        auth: Any = httpx2.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT,
    ) -> httpx2.Response:
        custom_auth = auth is not httpx2.USE_CLIENT_DEFAULT and auth is not None
        if custom_auth or not isinstance(request.stream, httpx2.ByteStream):  # auth, uploads
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if isinstance(follow_redirects, UseClientDefault):
            follow_redirects = self.follow_redirects
        session = self._session or self._open()
        timeout = request.extensions.get("timeout") or {}
        started = time.perf_counter()
        with _httpx_errors(request):
            reply = await session.request(
                request.method,
                str(request.url),
                headers=_wire_headers(request.headers),
                data=request.content or None,  # read: a ByteStream
                allow_redirects=follow_redirects,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
            try:
                limit = self.max_stream_bytes if stream else self.max_body_bytes
                inflater = _inflater(reply, request, limit, "stream" if stream else "reply")
                headers = _decoded_headers(reply) if inflater else reply.raw_headers
                if stream:
                    body_stream = _Body(reply, request, limit, inflater)
                    return httpx2.Response(
                        reply.status, headers=headers, stream=body_stream, request=request,
                        extensions=HTTP_1_1,
                    )  # fmt: skip
                body = await self._read(reply, request)
                if inflater is not None:
                    body = inflater.decode(body, last=True)
            except BaseException:
                reply.close()  # cancelled or broken mid-body: hang up, never reuse it
                raise
            reply.release()
        # As a stream, read below: ``content=`` would also add a Content-Length header
        # by a case-insensitive search of the rest, which nothing here reads.
        response = httpx2.Response(
            reply.status,
            headers=headers,
            stream=httpx2.ByteStream(body),
            request=request,
            extensions=HTTP_1_1,
        )
        _as_read(response, body)
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
        return response

    async def _read(self, reply: aiohttp.ClientResponse, request: httpx2.Request) -> bytes:
        """A plain reply's body, whole, unless it passes ``max_body_bytes``."""
        length = reply.content_length
        if length is not None and length <= self.max_body_bytes:
            return await reply.read()  # the usual case: it said how long, and it fits
        if length is not None:
            raise too_large(request, "reply", self.max_body_bytes)
        parts, size = [], 0
        async for part in reply.content.iter_any():  # chunked: counted as it arrives
            size += len(part)
            if size > self.max_body_bytes:
                raise too_large(request, "reply", self.max_body_bytes)
            parts.append(part)
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


@functools.lru_cache(maxsize=64)
def _timeouts(
    connect: float | None, read: float | None, write: float | None, pool: float | None
) -> dict[str, float | None]:
    return {"connect": connect, "read": read, "write": write, "pool": pool}


def _as_dict(timeout: Any) -> dict[str, float | None]:
    """A timeout as httpx's request extension; the same few every call, so cached."""
    if timeout is None or isinstance(timeout, int | float):
        return _timeouts(timeout, timeout, timeout, timeout)  # what httpx2.Timeout(t) holds
    if not isinstance(timeout, httpx2.Timeout):
        timeout = httpx2.Timeout(timeout)
    return _timeouts(timeout.connect, timeout.read, timeout.write, timeout.pool)


def _as_read(response: httpx2.Response, body: bytes) -> None:
    """``response`` as ``read()`` leaves it, for a body that needs no (more) decoding.

    ``read()`` runs the body through httpx's decoder and chunker generators (in
    two context managers) to join it back together: a fifth of a call's httpx
    CPU. Private: ``_content`` is where httpx keeps a read body (``.content``,
    ``.text``, ``.json()`` read it); test_llm_transport.py reads a reply back
    through them, so a change there fails loudly.
    """
    response._content = body
    response.is_stream_consumed = True
    response.is_closed = True


class KeptHeaders(httpx2.Headers):
    """Headers that keep their ``str`` pairs for aiohttp until anything changes them.

    ``multi_items`` decodes every name and value of a request again to hand
    them to aiohttp; :class:`~middleware.llm.openai_client.LeanOpenAI` built
    these pairs once per kind.
    Any change (the `openai` client's auth or provider hooks may set one) drops
    them, and the headers are read afresh.
    """

    wire: list[tuple[str, str]] | None = None

    def __setitem__(self, key: str, value: str) -> None:
        self.wire = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.wire = None
        super().__delitem__(key)

    # ``|=`` too; the signature is httpx's own, which narrows MutableMapping's as well.
    def update(self, headers: Any = None) -> None:  # type: ignore[override]
        self.wire = None
        super().update(headers)


def _wire_headers(headers: httpx2.Headers) -> list[tuple[str, str]]:
    if isinstance(headers, KeptHeaders) and headers.wire is not None:
        return headers.wire
    return headers.multi_items()


def too_large(request: httpx2.Request, what: str, limit: int) -> LLMError:
    """The error for a reply past a size bound: the bound, and where it came from."""
    size = f"{limit >> 20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"
    return LLMError(
        f"model server sent a {what} over {size}, more than the client reads "
        f"({request.method} {request.url})"
    )


class _Body(httpx2.AsyncByteStream):
    """A streamed reply's bytes as they arrive; closing it early closes the connection."""

    def __init__(
        self,
        reply: aiohttp.ClientResponse,
        request: httpx2.Request,
        limit: int,
        inflater: _Inflater | None = None,
    ) -> None:
        self._reply = reply
        self._request = request
        self._limit = limit
        self._inflater = inflater

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self._limit
        inflater = self._inflater
        with _httpx_errors(self._request):
            async for chunk in self._reply.content.iter_any():
                left -= len(chunk)  # what arrived; the inflater bounds what it decodes to
                if left < 0:
                    raise too_large(self._request, "stream", self._limit)
                yield chunk if inflater is None else inflater.decode(chunk)
            if inflater is not None:
                yield inflater.decode(b"", last=True)

    async def aclose(self) -> None:
        if self._reply.content.at_eof():
            self._reply.release()
        else:
            self._reply.close()  # the reader stopped early: the server must see the hang-up


class _Inflater:
    """A gzip or deflate body decoded as it arrives, never to more than ``limit`` bytes.

    Each piece is decoded with zlib's ``max_length`` one past what is left of the
    bound, so a bomb stops there instead of being decoded whole and measured after
    (below that length zlib uses all of the piece: nothing is left for later).
    """

    def __init__(self, coding: str, request: httpx2.Request, limit: int, what: str) -> None:
        self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header
        # "deflate" means zlib-wrapped, yet some servers send it raw (httpx reads both).
        self._raw_deflate_possible = coding == "deflate"
        self._request = request
        self._limit = limit
        self._left = limit
        self._what = what

    def decode(self, data: bytes, *, last: bool = False) -> bytes:
        try:
            try:
                out = self._zlib.decompress(data, self._left + 1)
            except zlib.error:
                if not self._raw_deflate_possible:
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._zlib.decompress(data, self._left + 1)
            self._raw_deflate_possible &= not data  # only the first bytes tell
            self._left -= len(out)
            # Checked before flush(), which decodes the rest of the input with no bound.
            if last and self._left >= 0:
                tail = self._zlib.flush()  # nothing is left over below the bound
                self._left -= len(tail)
                out += tail
        except zlib.error as exc:  # as httpx reports a body that does not decode
            raise httpx2.DecodingError(str(exc), request=self._request) from exc
        if self._left < 0:
            raise too_large(self._request, self._what, self._limit)
        return out


def _inflater(reply: aiohttp.ClientResponse, request: httpx2.Request, limit: int, what: str
              ) -> _Inflater | None:  # fmt: skip
    """The decoder a reply's Content-Encoding needs, None for none; an LLMError for one
    that cannot be decoded within a bound (br, zstd, unknown, or several in a row)."""
    if "Content-Encoding" not in reply.headers:
        return None  # the usual case
    named = ",".join(reply.headers.getall("Content-Encoding"))
    codings = [c.strip() for c in named.lower().split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        return _Inflater(codings[0], request, limit, what)
    raise LLMError(
        f"model server sent a {what} in Content-Encoding {named!r}, which the client does not "
        f"decode (it asks for {ACCEPT_ENCODING}) ({request.method} {request.url})"
    )


def _decoded_headers(reply: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    """The reply's headers for its decoded body: httpx must not decode it again."""
    encoded = (b"content-encoding", b"content-length")
    return [(name, value) for name, value in reply.raw_headers if name.lower() not in encoded]


@contextlib.contextmanager
def _httpx_errors(request: httpx2.Request) -> Iterator[None]:
    """aiohttp's errors as httpx's, which the `openai` client retries and maps."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx2.ConnectTimeout(str(exc), request=request) from exc
    except TimeoutError as exc:  # aiohttp's socket read timeout is one too
        raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx2.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise httpx2.ReadError(str(exc), request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx2.UnsupportedProtocol(str(exc), request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx2.NetworkError(str(exc), request=request) from exc
