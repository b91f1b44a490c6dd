"""Runtime settings: admin overrides from the decision log, layered onto `config.toml`.

Admins change a few keys from chat (``best_of``, ``model``, guard thresholds…)
without a restart. The overrides live in the decision log's settings table;
this module keeps them in memory and builds the effective :class:`Config` for
a channel: `config.toml`, then global overrides, then the channel's own, each
step validated by the same pydantic schema (which keys exist and how values
are read is :mod:`bot.config.keys`). The result and its fingerprint are cached per scope, so an
ordinary message pays two dict look-ups; any change clears the cache.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from bot.config.keys import SettingError, SettingKey, apply, coerce, parse_key
from bot.config.schema import Config
from middleware.decision_log.rows import SettingRow

log = logging.getLogger("guardbot.settings")

GLOBAL = "global"


class SettingsStore(Protocol):
    """The part of the decision log this module needs."""

    async def settings(self) -> list[SettingRow]: ...

    async def set_setting(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
    ) -> Any: ...


def channel_scope(platform: str, channel_id: str) -> str:
    return f"channel:{platform}:{channel_id}"


class RuntimeSettings:
    """The admin overrides, their cached effective configs, and the writes that change them."""

    def __init__(self, base: Config, store: SettingsStore) -> None:
        self.base = base
        self.store = store
        self.loaded = False
        self.rows: dict[str, dict[str, SettingRow]] = {}
        self.problems: dict[tuple[str, str], str] = {}  # (scope, key) -> why it is ignored
        self._cache: dict[str, tuple[Config, str]] = {}
        self._base_entry = (base, base.fingerprint())
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """(Re)read every override from the log and drop the cached configs."""
        rows: dict[str, dict[str, SettingRow]] = {}
        for row in await self.store.settings():
            rows.setdefault(row.scope, {})[row.key] = row
        self.rows, self.loaded = rows, True
        self._cache.clear()
        self.problems.clear()

    async def ensure_loaded(self) -> None:
        if not self.loaded:
            await self.load()

    def effective(self, platform: str, channel_id: str) -> tuple[Config, str]:
        """The config for a channel and its fingerprint; cached, so cheap per message."""
        scope = channel_scope(platform, channel_id)
        entry = self._cache.get(scope)
        if entry is None:
            # Channels without their own rows share the global entry (not cached per channel).
            entry = self._build(scope if scope in self.rows else GLOBAL)
        return entry

    def effective_for_scope(self, scope: str) -> Config:
        return self._build(scope if scope in self.rows else GLOBAL)[0]

    def _build(self, scope: str) -> tuple[Config, str]:
        entry = self._cache.get(scope)
        if entry is None:
            if scope == GLOBAL:
                config = self._layer(self.base, GLOBAL)
            else:
                config = self._layer(self._build(GLOBAL)[0], scope)
            entry = self._base_entry if config is self.base else (config, config.fingerprint())
            self._cache[scope] = entry
        return entry

    def _layer(self, config: Config, scope: str) -> Config:
        """Apply one scope's rows one at a time; a stale row is skipped, never fatal."""
        for key, row in sorted(self.rows.get(scope, {}).items()):
            try:
                config = apply(config, {key: row.value})
            except SettingError as exc:
                if (scope, key) not in self.problems:
                    log.warning("ignoring setting %s %s: %s", scope, key, exc)
                self.problems[(scope, key)] = str(exc)
        return config

    def overrides(self, scope: str) -> dict[str, Any]:
        return {k: r.value for k, r in self.rows.get(scope, {}).items()}

    def scopes_overriding(self, key: str) -> list[str]:
        return sorted(s for s, keys in self.rows.items() if s != GLOBAL and key in keys)

    def validate(self, scope: str, name: str, raw: str) -> tuple[SettingKey, Any]:
        """Parse and check a new value against the config it would produce; no write."""
        current = self.effective_for_scope(scope)
        key = parse_key(name, current)
        value = coerce(key, raw, current)
        apply(current, {key.name: value})
        return key, value

    async def write(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        actor: str,
        platform: str,
        channel_id: str,
        command: str,
    ) -> Any:
        """Store (``value=None``: delete) one override, then reload; returns the old value."""
        async with self._lock:
            try:
                old = await self.store.set_setting(
                    scope,
                    key,
                    value,
                    actor=actor,
                    platform=platform,
                    channel_id=channel_id,
                    command=command,
                )
            finally:
                await self.load()
        return old
