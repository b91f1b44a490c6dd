"""What of a text may be stored: secrets never, PII only when allowed, text only when allowed.

Every text that goes into the log (the message, replies, candidates, raw
guard output, reasons, errors, admin commands) passes through
:class:`TextPolicy` first. Secrets are masked always, PII when
``[log] redact_pii = true``. With ``store_text = false`` messages, replies and
candidates keep only their SHA-256 and length, and whatever a *model* wrote
about them (raw guard output, a model guard's reason, judge reasoning) is
dropped; reasons written by local guards and error messages stay, masked.
Hashing the masked text, not the original, means a stored hash can never be
used to confirm a guessed secret.

Secrets are masked by *shape* (:mod:`middleware.guards.secrets`) and by
*value*: the keys and tokens the bot was given (:func:`remember_secrets`, at
start) are replaced by ``[SECRET:configured]`` whatever their shape, wherever
:func:`mask_text` runs: the log, the search index, replies, terminal output and
the log handlers (:class:`SecretFilter`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterable

from middleware.guards.pii import mask_pii
from middleware.guards.secrets import SECRET_MARK, mask_secrets

_SURROGATE = re.compile("[\ud800-\udfff]")


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


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


SHORT = 120


# Shorter values are not masked by value: "test" or "1234" would shred ordinary text.
MIN_SECRET_CHARS = 8
CONFIGURED = f"{SECRET_MARK}configured]"
_known: tuple[str, ...] = ()  # longest first, so a value inside another is not half-masked


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add the values of the secrets this process was given; masked from now on, everywhere."""
    global _known
    fresh = {v.strip() for v in values if v and len(v.strip()) >= MIN_SECRET_CHARS}
    if not fresh - set(_known):
        return
    _known = tuple(sorted(fresh | set(_known), key=len, reverse=True))
    _mask_short.cache_clear()  # cached results predate these values


def forget_secrets() -> None:
    """Drop every remembered value (tests that start several bots in one process)."""
    global _known
    _known = ()
    _mask_short.cache_clear()


def mask_known(text: str) -> str:
    """``text`` with the remembered secret values replaced; a substring test per value."""
    for value in _known:
        if value in text:
            text = text.replace(value, CONFIGURED)
    return text


def mask_text(text: str) -> str:
    """Secrets masked by value and by shape: the form of a text anyone may see."""
    return mask_secrets(mask_known(text)) if text else text


def _mask(text: str, redact_pii: bool) -> str:
    text = mask_text(clean(text))
    return mask_pii(text) if redact_pii else text


_mask_short = functools.lru_cache(maxsize=4096)(_mask)


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


class TextPolicy:
    def __init__(self, *, store_text: bool = True, redact_pii: bool = False) -> None:
        self.store_text = store_text
        self.redact_pii = redact_pii

    def mask(self, text: str) -> str:
        """The storable form of a text: clean UTF-8, secrets masked, PII masked if asked."""
        if not text:
            return text
        if len(text) <= SHORT:  # guard reasons and errors repeat all day: scan each once
            return _mask_short(text, self.redact_pii)
        return _mask(text, self.redact_pii)

    def mask_opt(self, text: str | None) -> str | None:
        return None if text is None else self.mask(text)

    def content(self, text: str) -> tuple[str | None, int, str]:
        """(stored text or None, length, sha256) of a message-like text."""
        masked = self.mask(text)
        return (masked if self.store_text else None), len(masked), sha256_hex(masked)

    def payload(self, text: str | None) -> str | None:
        """Raw model output and the like: masked, and dropped when texts are not stored."""
        if text is None or not self.store_text:
            return None
        return self.mask(text)

    def prose(self, text: str) -> str:
        """Model-written prose (judge reasoning): may quote the text, so only kept with it."""
        return self.mask(text) if self.store_text else ""

    def label(self, text: str) -> str:
        """A text used as a key (vote answers): masked, or a short hash when not stored."""
        masked = self.mask(text)
        return masked if self.store_text else "sha256:" + sha256_hex(masked)[:16]
