"""Runtime overrides made visible wherever they apply: start banners, `config`, `screen`, replay.

An admin's `/admin guard disable profanity here` lives in the decision log
and outlives the chat it was typed in; anything that screens or describes the
policy must say which overrides it applied, or an operator cannot tell why a
message passed. :func:`override_rows` lists them once for every surface, and
:class:`NoOverrides` stands in for the log when a command is asked to ignore
them (``--no-overrides``).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.render import plain
from bot.config.runtime import GLOBAL, RuntimeSettings
from middleware.decision_log.rows import SettingRow


def override_rows(settings: RuntimeSettings) -> list[dict[str, Any]]:
    """Every stored override, global first: scope, key, value, who set it and when,
    and why it is ignored when today's config no longer accepts it."""
    found = []
    scopes = sorted(settings.rows, key=lambda s: (s != GLOBAL, s))
    for scope in scopes:
        for key, row in sorted(settings.rows[scope].items()):
            found.append(
                {
                    "scope": scope,
                    "key": key,
                    "value": row.value,
                    "actor": row.actor,
                    "updated_utc": row.updated_utc.isoformat(),
                    "ignored": settings.problems.get((scope, key)),
                }
            )
    return found


def override_line(row: dict[str, Any]) -> str:
    """One override for a terminal: ``global guard.profanity.enabled = false (by …, …)``."""
    value = json.dumps(row["value"], ensure_ascii=False)
    ignored = f" [ignored: {row['ignored']}]" if row["ignored"] else ""
    return plain(
        f"{row['scope']} {row['key']} = {value} "
        f"(set by {row['actor']}, {row['updated_utc'][:16].replace('T', ' ')} UTC){ignored}"
    )


def banner(settings: RuntimeSettings) -> str | None:
    """The start-up notice when overrides are in force, else None."""
    rows = override_rows(settings)
    if not rows:
        return None
    lines = [f"{len(rows)} runtime override(s) from the decision log are in force:"]
    lines += [f"  {override_line(r)}" for r in rows]
    lines.append("  (`guardbot settings` lists them; `/admin reset KEY` removes one)")
    return "\n".join(lines)


class NoOverrides:
    """A settings store with no rows: the policy exactly as the config file says."""

    async def settings(self) -> list[SettingRow]:
        return []

    async def set_setting(self, scope: str, key: str, value: Any, **_: Any) -> Any:
        raise RuntimeError("runtime settings are ignored here (--no-overrides): nothing to change")
