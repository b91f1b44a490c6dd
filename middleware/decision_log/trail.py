"""The settings in force, derived from the chained admin trail, and what the table adds to it.

The ``settings`` table is only an index of the current overrides: the
authority is the trail, the chained admin actions that set or reset a key
(``changes_setting = 1``), starting from the snapshot in the last prune
checkpoint (which is chained too). :func:`derive` replays the trail;
:func:`compare` names every settings row the trail does not explain (a row
forged into the file, a value edited, a row deleted). The bot applies the
derived settings, never an unexplained row, and `guardbot verify` fails on
any. Nothing here is a backend's: both backends read the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from middleware.decision_log.chain import canonical_json

Key = tuple[str, str]  # (scope, key)


@dataclass(frozen=True, slots=True)
class SettingState:
    scope: str
    key: str
    value_json: str
    updated_utc: str
    actor: str
    source: str  # the admin action that set it, or "checkpoint"


@dataclass(frozen=True, slots=True)
class Discrepancy:
    problem: str  # "inserted" | "changed" | "deleted"
    scope: str
    key: str
    message: str

    @property
    def id(self) -> str:
        return f"{self.scope} {self.key}"


def derive(
    snapshot: Iterable[SettingState], changes: Iterable[Mapping[str, Any]]
) -> dict[Key, SettingState]:
    """Apply the trail's setting changes, in chain order, to a checkpoint's snapshot."""
    state = {(s.scope, s.key): s for s in snapshot}
    for row in changes:
        at = (row["scope"], row["key"])
        if row["new_json"] is None:
            state.pop(at, None)
        else:
            state[at] = SettingState(
                *at, row["new_json"], row["created_utc"], row["actor"], row["id"]
            )
    return state


def snapshot_json(state: Mapping[Key, SettingState]) -> str:
    """The settings in force at a prune checkpoint, as stored (and hashed) in it."""
    rows = [
        [s.scope, s.key, s.value_json, s.updated_utc, s.actor] for _, s in sorted(state.items())
    ]
    return canonical_json(rows)


def parse_snapshot(text: str | None) -> list[SettingState]:
    if not text:
        return []
    return [SettingState(s, k, v, at, who, "checkpoint") for s, k, v, at, who in json.loads(text)]


def compare(
    state: Mapping[Key, SettingState], table: Iterable[tuple[str, str, str, str, str]]
) -> list[Discrepancy]:
    """Every settings row (scope, key, value_json, updated_utc, actor) the trail does not
    explain, and every setting of the trail the table lacks; by scope and key."""
    found: list[Discrepancy] = []
    seen: set[Key] = set()
    for scope, key, value_json, updated_utc, actor in table:
        seen.add((scope, key))
        s = state.get((scope, key))
        what = f"setting {scope} {key}"
        if s is None:
            message = f"{what} = {value_json} was inserted: no admin action in the trail sets it"
            found.append(Discrepancy("inserted", scope, key, message))
        elif (value_json, updated_utc, actor) != (s.value_json, s.updated_utc, s.actor):
            message = (
                f"{what} was changed: it holds {value_json} by {actor} at {updated_utc}, the "
                f"trail sets {s.value_json} by {s.actor} at {s.updated_utc} ({_source(s)})"
            )
            found.append(Discrepancy("changed", scope, key, message))
    for (scope, key), s in state.items():
        if (scope, key) not in seen:
            message = f"setting {scope} {key} was deleted: the trail sets it to {s.value_json}"
            found.append(Discrepancy("deleted", scope, key, f"{message} ({_source(s)})"))
    return sorted(found, key=lambda d: (d.scope, d.key))


def _source(s: SettingState) -> str:
    return "at the last prune" if s.source == "checkpoint" else f"admin action {s.source}"
