"""What of a text may be stored: secrets never, PII only when allowed, text only when allowed.

Every text that goes into the log (the message, replies, candidates, raw
guard output, reasons, errors, admin commands) passes through
:class:`TextPolicy` first. Secrets are masked always (by shape and by the
configured values: :mod:`middleware.masking`), PII when
``[log] redact_pii = true``. With ``store_text = false`` messages, replies and
candidates keep only their SHA-256 and length, and whatever a *model* wrote
about them (raw guard output, a model guard's reason, judge reasoning) is
dropped; reasons written by local guards and error messages stay, masked.
Hashing the masked text, not the original, means a stored hash can never be
used to confirm a guessed secret.
"""

from __future__ import annotations

import hashlib

from middleware.masking import mask_storable


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextPolicy:
    def __init__(self, *, store_text: bool = True, redact_pii: bool = False) -> None:
        self.store_text = store_text
        self.redact_pii = redact_pii

    def mask(self, text: str) -> str:
        """The storable form of a text: clean UTF-8, secrets masked, PII masked if asked."""
        return mask_storable(text, self.redact_pii) if text else text

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
