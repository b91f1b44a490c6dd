"""Helpers shared by the CLI command modules: config loading, exit codes, JSON output.

Every command answers in the same way, so scripts can rely on it: one exit
code scheme (:data:`EXIT_CODES`, shown in ``--help``) and one JSON style
(indented, UTF-8 kept as is).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from adapters.render import json_text
from bot.audit.overrides import NoOverrides, override_rows
from bot.config.keys import SettingError, current_value, parse_key
from bot.config.runtime import RuntimeSettings
from bot.config.schema import Config, ConfigError, load_config, resolve_config_path
from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.postgres import open_store
from middleware.masking import mask_text

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # no log, unknown id, a failed check, or a --fail-on-… condition met
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_INTERRUPTED = 130
EXIT_CODES = (
    "exit status: 0 ok; 1 not found (no log, unknown id), check failed (verify) or a "
    "--fail-on-… condition met; 2 usage or configuration error (also an ambiguous id); "
    "130 interrupted"
)


def print_json(data: Any) -> None:
    """The one JSON style of every command: indented, non-ASCII text kept readable,
    control and bidi characters escaped (:func:`adapters.render.json_text`)."""
    print(json_text(data))


def masked(data: Any) -> Any:
    """``data`` with every string in it masked (:func:`middleware.masking.mask_text`):
    for output built from a config file or from input rather than from the log,
    whose texts were masked when stored."""
    if isinstance(data, str):
        return mask_text(data)
    if isinstance(data, dict):
        return {key: masked(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [masked(item) for item in data]
    return data


def load_config_from_args(args: argparse.Namespace) -> Config:
    """The config named by --config / $GUARDBOT_CONFIG / ./config.toml / packaged defaults."""
    return load_config(resolve_config_path(getattr(args, "config", None)))


def positive_int(text: str) -> int:
    """argparse type for counts such as -n: a whole number of at least 1."""
    if not text.strip().isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def log_path(args: argparse.Namespace) -> Path:
    """The decision log to read: --db, else [log] path of the config."""
    if getattr(args, "db", None):  # an explicit file needs no (possibly broken) config
        return Path(args.db)
    return Path(load_config_from_args(args).log.path)


async def open_log(
    args: argparse.Namespace, *, read_only: bool, store_text: bool = True, redact_pii: bool = False
) -> DecisionLog:
    """The log of --db (a file or a postgresql:// URL), else of the config ([log] url or path)."""
    if getattr(args, "db", None):
        return await open_store(
            str(args.db), read_only=read_only, store_text=store_text, redact_pii=redact_pii
        )
    log = load_config_from_args(args).log
    return await open_store(
        log.target, read_only=read_only, password_env=log.password_env,
        store_text=store_text, redact_pii=redact_pii,
    )  # fmt: skip


async def runtime_settings(
    config: Config, *, db: Path | None = None, ignore: bool = False
) -> RuntimeSettings:
    """The runtime overrides stored in the log (opened read-only), loaded onto ``config``.

    None when ``ignore`` (``--no-overrides``) or when there is no log yet; an
    unreadable log is a one-line error, not a silent "no overrides".
    """
    path = db or Path(config.log.path)
    shared = not db and bool(config.log.url)  # PostgreSQL: there is no file to look for
    if ignore or not (shared or path.is_file()):
        settings = RuntimeSettings(config, NoOverrides())
        await settings.load()
        return settings
    try:
        target = config.log.url if shared else path
        log = await open_store(target, read_only=True, password_env=config.log.password_env)
    except LogUnavailable as exc:
        raise ConfigError(f"cannot read runtime settings from {path}: {exc}") from None
    try:
        settings = RuntimeSettings(config, log)
        await settings.load()
    finally:
        await log.close()
    return settings


def marked_overrides(settings: RuntimeSettings) -> list[dict[str, Any]]:
    """The overrides with the config file's own value beside each (``file_value``)."""
    rows = override_rows(settings)
    for row in rows:
        try:
            row["file_value"] = current_value(settings.base, parse_key(row["key"], settings.base))
        except SettingError:  # a key today's config no longer has
            row["file_value"] = None
    return rows
