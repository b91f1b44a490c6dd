"""`guardbot run`: serve Slack and/or Discord from one process until a signal.

Each platform is started only when it is enabled in the config and its
secrets are in the environment; a platform that is half-configured (a bot
token without a way to receive events, a rejected token) is a clear startup
error. SIGINT/SIGTERM stop taking new messages, let those in flight finish,
flush the decision log and log out. A service whose connection ends for good
after start (it sets :attr:`Service.failed`) stops the others too, and the
process exits with status 1 instead of running on, serving nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from adapters.base import AdapterConfigError, Service
from bot.app import GuardBot
from bot.cli.common import load_config_from_args
from bot.config.schema import Config
from bot.serving import tune_gc_for_serving

log = logging.getLogger("guardbot.run")

NOTHING_TO_SERVE = (
    "nothing to serve: set SLACK_BOT_TOKEN with SLACK_APP_TOKEN (Socket Mode) or "
    "SLACK_SIGNING_SECRET (HTTP Events API), and/or DISCORD_TOKEN; "
    "or try the bot offline with `guardbot chat`"
)


def build_services(config: Config, bot: GuardBot, env: Mapping[str, str]) -> list[Service]:
    services: list[Service] = []
    from adapters.slack.service import SlackService, slack_requested

    if slack_requested(config.slack, env):
        services.append(SlackService.from_env(config.slack, bot, env=env))
    from adapters.discord.service import DiscordService, discord_requested

    if discord_requested(config.discord, env):
        services.append(DiscordService.from_env(config.discord, bot, env=env))
    return services


async def serve(
    config: Config,
    env: Mapping[str, str],
    stop: asyncio.Event | None = None,
    *,
    tune_gc: bool = False,
) -> int:
    """Serve until ``stop`` (or a signal); ``tune_gc``: this process serves from now on
    (the command's, not a test's: see :func:`~bot.serving.tune_gc_for_serving`)."""
    bot = await GuardBot.open(config, env=env)
    if tune_gc:
        tune_gc_for_serving()
    stop = stop or asyncio.Event()
    started: list[Service] = []
    try:
        services = build_services(config, bot, env)
        if not services:
            print(f"guardbot: {NOTHING_TO_SERVE}", file=sys.stderr)
            return 2
        if notice := bot.notice():
            print(f"notice: {notice}", file=sys.stderr, flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        for service in services:
            await service.start()
            started.append(service)
            print(f"guardbot: {service.name} is up", file=sys.stderr, flush=True)
        if failure := await _until_stopped_or_failed(stop, started):
            print(f"guardbot: {failure.rstrip('.')}; shutting down", file=sys.stderr, flush=True)
            return 1
        print("guardbot: shutting down (finishing messages in flight)", file=sys.stderr)
        return 0
    except AdapterConfigError as exc:
        print(f"guardbot: {exc}", file=sys.stderr)
        return 2
    finally:
        # Stop in reverse order; each stop finishes its in-flight messages first.
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("error while stopping %s", service.name)
        await bot.close()


async def _until_stopped_or_failed(stop: asyncio.Event, services: list[Service]) -> str | None:
    """Wait for ``stop`` or any service's ``failed`` event; the failure, if any."""
    events = [stop, *(service.failed for service in services)]
    waits = {asyncio.create_task(event.wait()) for event in events}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    for service in services:
        if service.failed.is_set():
            return service.failure or f"{service.name}: the connection ended"
    return None


def _run(args: argparse.Namespace) -> int:
    config = load_config_from_args(args)
    return asyncio.run(serve(config, os.environ, tune_gc=True))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("run", help="serve Slack and/or Discord as configured")
    parser.set_defaults(handler=_run)
