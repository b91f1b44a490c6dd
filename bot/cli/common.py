"""Helpers shared by the CLI command modules (config loading, output)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.config.schema import Config, load_config, resolve_config_path


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
