"""Errors an adapter raises before it can serve a platform.

``guardbot run`` turns these into one clear line for the operator (a missing
token, a rejected token, a privileged intent not enabled) instead of a
traceback. They carry no secrets: messages name the variable, never its value.
"""

from __future__ import annotations


class AdapterConfigError(Exception):
    """The adapter cannot start as configured; the message says what to fix."""
