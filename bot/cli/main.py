"""The `guardbot` command line: chat, config, and the commands other modules register.

Each command module exposes ``register(subparsers)`` and sets a ``handler``
default taking the parsed arguments and returning an exit code (or an
awaitable of one). Configuration errors and Ctrl-C end in one clear line,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.console import run_console
from adapters.render import escape
from bot.app import GuardBot, remember_env_secrets
from bot.audit.overrides import override_line
from bot.cli.common import (
    EXIT_CODES,
    load_config_from_args,
    marked_overrides,
    masked,
    print_json,
    runtime_settings,
)
from bot.config.providers import ModelProvider
from bot.config.schema import Config, ConfigError
from bot.serving import tune_gc_for_serving
from middleware.decision_log.storage import LogUnavailable
from middleware.masking import SecretFilter

# Modules that add subcommands; each has `register(subparsers)`.
COMMAND_MODULES: list[str] = [
    "bot.cli.audit",
    "bot.cli.replay",
    "bot.cli.screen",
    "bot.cli.settings",
    "bot.cli.run",
    "bot.cli.eval",
    "bot.cli.migrate",
]


def _chat(args: argparse.Namespace) -> int:
    return asyncio.run(_chat_async(args))


async def _chat_async(args: argparse.Namespace) -> int:
    config = load_config_from_args(args)
    bot = await GuardBot.open(config)
    tune_gc_for_serving()  # a conversation is served from here on, like `guardbot run`
    try:
        if notice := bot.notice():
            print(f"notice: {notice}", file=sys.stderr, flush=True)
        console = run_console(bot, show_explain=args.explain, history_path=_history_path(config))
        return await console.run()
    finally:
        await bot.close()


def _history_path(config: Config) -> Path | None:
    """The prompt history file, beside the decision log (``guardbot.db`` -> ``guardbot.history``).

    None (history for this run only) when the log keeps no message text or masks
    PII in it: a history file must not keep what the log deliberately does not.
    """
    if not config.log.store_text or config.log.redact_pii:
        return None
    return Path(config.log.path).with_suffix(".history")


def _show_config(args: argparse.Namespace) -> int:
    base = load_config_from_args(args)
    settings = asyncio.run(runtime_settings(base, ignore=args.no_overrides))
    config, _ = settings.effective("", "")  # the file, then the global runtime overrides
    data = config.model_dump(mode="json")
    provider = ModelProvider(config.llm)
    # Only the name of the key's variable is config; the value is shown masked.
    data["llm"]["api_key"] = "***set***" if provider.api_key else "(not set)"
    data["llm"]["effective_provider"] = "echo" if provider.offline else "openai-compatible"
    # Marked apart: global ones are applied above, channel ones only in their channel.
    data["runtime_overrides"] = marked_overrides(settings)
    # A key pasted into the file by mistake (into a system prompt, say) is not echoed.
    print_json(masked(data))
    for row in data["runtime_overrides"]:
        print(f"override: {override_line(row)}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardbot",
        description="A chat bot whose middleware screens every message while the reply is "
        "generated, and audits every decision in SQLite.",
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $GUARDBOT_CONFIG, ./config.toml, or the packaged defaults)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chat = sub.add_parser("chat", help="talk to the bot in the terminal (offline by default)")
    chat.add_argument("--explain", action="store_true", help="show verdicts and timings per turn")
    chat.set_defaults(handler=_chat)
    show = sub.add_parser(
        "config",
        help="print the effective configuration (runtime overrides applied and listed), "
        "secrets masked",
    )
    show.add_argument(
        "--no-overrides", action="store_true", help="the config file alone, without the log's"
    )
    show.set_defaults(handler=_show_config)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # `guardbot chat --config x.toml` should work as well as `guardbot --config x.toml chat`.
    # SUPPRESS keeps a subcommand from resetting a --config given before it.
    for command in sub.choices.values():
        if "--config" not in command._option_string_actions:
            command.add_argument(
                "--config",
                metavar="PATH",
                default=argparse.SUPPRESS,
                help="config file (as guardbot --config)",
            )
    return parser


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (tests and embedding callers replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


# The Slack SDK's own loggers, named so in adapters/slack/service.py (see setup_logging).
SDK_LOGGERS = ("guardbot.slack.api", "guardbot.slack.socket")
_handler: logging.Handler | None = None  # ours on the root logger, replaced on a new main()


def setup_logging(verbose: bool) -> None:
    """WARNING for everyone; ``-v`` raises only guardbot's own loggers to DEBUG.

    Libraries stay at WARNING even with ``-v``: an HTTP client at DEBUG logs
    request and response headers, and a server that echoes ``Authorization``
    would put the key on stderr. Every record is masked and escaped (:class:`SecretFilter`).
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Log lines quote users (a refused admin's id): escaped like every terminal surface.
    _handler.addFilter(SecretFilter(rewrite=escape))
    root.addHandler(_handler)
    root.setLevel(logging.WARNING)
    # Every module logs under "guardbot.*" (slack-sdk's Socket Mode client too: we name it).
    logging.getLogger("guardbot").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    # Except the Slack SDK's clients, named by us so their warnings are masked: at DEBUG
    # they log every request and event body, users' messages with them, even when the
    # log is told not to keep message text ([log] store_text = false).
    for sdk in SDK_LOGGERS:
        logging.getLogger(sdk).setLevel(logging.INFO if verbose else logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    remember_env_secrets(os.environ)  # the config adds the variables it names when loaded
    setup_logging(args.verbose)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result = handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
        return int(result or 0)
    except ConfigError as exc:
        print(f"guardbot: {exc}", file=sys.stderr)
        return 2
    except LogUnavailable as exc:  # the log cannot be opened (not SQLite, no folder, ...)
        print(f"guardbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
