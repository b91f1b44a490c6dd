"""Every error the middleware raises on purpose, under one base class.

Callers that want "anything guardbot's engine reported" catch
:class:`GuardbotError`; the subclasses say which part failed. Configuration
errors also derive from ``ValueError`` so that pydantic validators (which only
turn ``ValueError`` into a validation error naming the key) can raise them.
The decision log keeps its storage errors in ``middleware.decision_log``.
"""

from __future__ import annotations


class GuardbotError(Exception):
    """Base of the middleware's own errors."""


class LLMError(GuardbotError):
    """A model call failed for a reason worth showing to an operator (never a secret).
    ``raw`` is what the model had sent when the call failed (a stream that broke off
    mid-reply), for the audit; None when it sent nothing usable."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class VerdictParseError(GuardbotError, ValueError):
    """A model's answer did not follow the required format (a guard verdict, a judge's
    choice, criteria scores). A guard counts it as an error (then ``on_error``); a
    selector falls back. ``raw`` is the answer as received, for the audit."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class GuardConfigError(GuardbotError, ValueError):
    """Guards that cannot be built as configured (unknown kind, bad ensemble members)."""


class SelectionConfigError(GuardbotError, ValueError):
    """A best-of-N selection that cannot be built (unknown method, unusable criteria)."""
