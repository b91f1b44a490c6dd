"""What of a text anyone may see: secrets masked by shape and by value, and storable UTF-8.

Secrets are masked by *shape* (:mod:`middleware.guards.secrets`) and by
*value*: the keys and tokens the bot was given (:func:`remember_secrets`, at
start) are replaced by ``[SECRET:configured]`` whatever their shape, and as
the shapes are, through invisible characters and full-width forms (a value
split by a zero-width space is masked whole, the invisible characters with it),
wherever :func:`mask_text` runs: the decision log and its search index, replies,
terminal output and the log handlers (:class:`SecretFilter`). It is one
concept with its own users (the bot, the CLI, the renderer, the log), so it
lives beside them all rather than inside the decision log.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable

from middleware.guards.normalize import strip_invisible
from middleware.guards.pii import mask_pii
from middleware.guards.secrets import SECRET_MARK, mask_secrets
from middleware.guards.spans import Span, mask, non_overlapping, scan

_SURROGATE = re.compile("[\ud800-\udfff]")
# Shorter values are not masked by value: "test" or "1234" would shred ordinary text.
MIN_SECRET_CHARS = 8
CONFIGURED = f"{SECRET_MARK}configured]"
SHORT = 120  # texts up to this long are masked through a cache (see mask_storable)
_known: tuple[str, ...] = ()  # longest first, so a value inside another is not half-masked
# What a text is searched for: the values and their plain forms (strip_invisible; the
# same strings for the usual ASCII values), longest first. spans.scan searches a text and
# its plain form with one finder, and a value given with an invisible character in it is
# still found written without.
_searched: tuple[str, ...] = ()


def clean(text: str) -> str:
    """Replace lone surrogates (from hostile or broken input) so the text is storable UTF-8,
    and NUL, which PostgreSQL's text cannot hold (both backends store the same text)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add the values of the secrets this process was given; masked from now on, everywhere."""
    global _known, _searched
    fresh = {v.strip() for v in values if v and len(v.strip()) >= MIN_SECRET_CHARS}
    if not fresh - set(_known):
        return
    _known = tuple(sorted(fresh | set(_known), key=len, reverse=True))
    plain = {strip_invisible(v) for v in _known}
    forms = set(_known) | {v for v in plain if len(v) >= MIN_SECRET_CHARS}
    _searched = tuple(sorted(forms, key=len, reverse=True))
    _mask_short.cache_clear()  # cached results predate these values


def forget_secrets() -> None:
    """Drop every remembered value (tests that start several bots in one process)."""
    global _known, _searched
    _known = _searched = ()
    _mask_short.cache_clear()


def known_secrets() -> tuple[str, ...]:
    """The remembered values, longest first: a streamed reply holds back the start of one."""
    return _known


def mask_known(text: str) -> str:
    """``text`` with the remembered secret values replaced; a substring test per value."""
    return _mask_values(text)[0]


def _mask_values(text: str) -> tuple[str, str]:
    """:func:`mask_known` of ``text``, and the plain form of that (``strip_invisible``).

    A value can hide behind invisible characters or full-width forms only where
    the plain form differs from the text; only then is the text searched again,
    through :func:`~middleware.guards.spans.scan`, which masks what the plain
    form holds on the text as written (the invisible characters inside a value go
    with it). The plain form is returned because shape masking needs it next: a
    text that hides nothing costs one ``strip_invisible``, as it did before.
    """
    for value in _searched:
        if value in text:
            text = text.replace(value, CONFIGURED)
    plain = strip_invisible(text)  # the text itself when ASCII
    if plain == text or not _searched:
        return text, plain
    spans = scan(_find_known, text, plain)
    if not spans:
        return text, plain
    text = mask(text, spans, _configured)
    return text, strip_invisible(text)


def _find_known(text: str) -> list[Span]:
    """Every occurrence of a remembered value (or its plain form) in ``text``."""
    spans: list[Span] = []
    for value in _searched:
        at = text.find(value)
        while at >= 0:
            spans.append((at, at + len(value), "configured"))
            at = text.find(value, at + len(value))
    return non_overlapping(spans)


def _configured(_kind: str) -> str:
    return CONFIGURED


def mask_text(text: str) -> str:
    """Secrets masked by value and by shape: the form of a text anyone may see."""
    if not text:
        return text
    masked, plain = _mask_values(text)
    return mask_secrets(masked, plain)


def _mask(text: str, redact_pii: bool) -> str:
    text = mask_text(clean(text))
    return mask_pii(text) if redact_pii else text


_mask_short = functools.lru_cache(maxsize=4096)(_mask)


def mask_storable(text: str, redact_pii: bool) -> str:
    """The storable form of a text: clean UTF-8, secrets masked, PII masked if asked."""
    if len(text) <= SHORT:  # guard reasons and errors repeat all day: scan each once
        return _mask_short(text, redact_pii)
    return _mask(text, redact_pii)


class SecretFilter(logging.Filter):
    """Masks secrets in every record a handler emits (message, arguments and traceback).

    ``rewrite`` may do more than :func:`mask_text` as long as it masks too: the
    CLI's stderr handler also escapes terminal control sequences a log line
    quotes from a user (``adapters.render.escape``).
    """

    def __init__(self, rewrite: Callable[[str], str] = mask_text) -> None:
        super().__init__()
        self.rewrite = rewrite

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.rewrite(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.rewrite(record.exc_text)
        if record.stack_info:
            record.stack_info = self.rewrite(record.stack_info)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True
