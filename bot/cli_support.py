"""Helpers shared by the CLI command modules (config loading, output)."""

from __future__ import annotations

import argparse

from bot.config import Config, load_config, resolve_config_path


def load_config_from_args(args: argparse.Namespace) -> Config:
    """The config named by --config / $GUARDBOT_CONFIG / ./config.toml / packaged defaults."""
    return load_config(resolve_config_path(getattr(args, "config", None)))
