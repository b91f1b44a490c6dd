"""Parses the times people type for ``--since`` / ``--until``: ``7d``, ``12h``, ``2024-05-01``.

Relative forms count back from now; absolute ones are ISO 8601 dates or
date-times. A time without a zone is taken as UTC, the zone the decision log
stores, so the same command selects the same decisions on every machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class WhenError(ValueError):
    """A time that cannot be understood; the message shows the accepted forms."""


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    raw = text.strip().lower()
    now = now or datetime.now(UTC)
    if raw == "now":
        return now
    if raw in {"today", "yesterday"}:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if raw == "yesterday" else 0)
    if m := _RELATIVE.fullmatch(raw):
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise WhenError(
            f"cannot read the time {shown!r}; use e.g. 30m, 12h, 7d, 2w, today, "
            "2024-05-01 or 2024-05-01T14:30 (UTC unless a zone is given)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
