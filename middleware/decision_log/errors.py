"""The one error the application must handle from the decision log.

The bot never sends a reply that is not on record, so "cannot write the log"
has to be a distinct, catchable condition with a message an operator can act
on (disk full, read-only file, missing directory), not a raw sqlite3 error.
"""

from __future__ import annotations


class LogUnavailable(Exception):
    """The decision log cannot be written (or opened); the message says why and where."""
