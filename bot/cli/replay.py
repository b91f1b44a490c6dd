"""`guardbot replay`: re-run logged decisions through today's policy (or another one).

Answers "what would this policy have done to last week's traffic?" from the
shell and in CI (``--fail-on-change``), with a progress bar, a table, JSON and
a self-contained HTML report. It opens the decision log, never an adapter, so
nothing is ever posted; the only thing it writes is the record of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.app import GuardBot
from bot.audit.overrides import NoOverrides, override_line, override_rows
from bot.cli.common import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    load_config_from_args,
    open_log,
    positive_int,
    print_json,
)
from bot.config.runtime import RuntimeSettings
from bot.config.schema import Config, load_config, resolve_config_path
from bot.replay.render import print_report, print_runs
from bot.replay.report_html import render_html
from bot.replay.results import ReplayResult, RunReport, Tally
from bot.replay.select import DEFAULT_LIMIT, DecisionFilter, SelectionError, select
from bot.replay.session import ReplayError, ReplayOptions, prepare, replay_selected
from bot.replay.when import WhenError, parse_when
from middleware.decision_log import LogUnavailable
from middleware.decision_log.postgres import PgTarget, is_postgres_url
from middleware.private_file import open_private

EXIT_CHANGED = EXIT_NOT_FOUND  # 1: --fail-on-change met (see EXIT_CODES)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="re-run logged decisions through the current (or another) policy",
        description="Re-run logged decisions through the current configuration and runtime "
        "settings, or through --policy FILE, and report which decisions would change. "
        "Nothing is posted to Slack or Discord. The log read is [log] path of --config "
        "(or --db), and is always printed.",
        epilog=EXIT_CODES,
    )
    pick = p.add_argument_group("which decisions")
    pick.add_argument("--since", metavar="WHEN", help="e.g. 7d, 12h, 2024-05-01 (UTC)")
    pick.add_argument("--until", metavar="WHEN", help="end of the window (exclusive)")
    pick.add_argument("--channel", metavar="ID", help="only this channel id")
    pick.add_argument("--user", metavar="ID", help="only this user id")
    pick.add_argument("--action", choices=("replied", "blocked", "error"), help="only this action")
    pick.add_argument(
        "--ids", metavar="ID", nargs="+", action="extend", help="these decision ids (or prefixes)"
    )
    pick.add_argument(
        "--limit",
        "-n",
        metavar="N",
        type=positive_int,
        help=f"at most this many, newest first (default {DEFAULT_LIMIT}; --list: 20 runs)",
    )
    how = p.add_argument_group("how")
    how.add_argument(
        "--policy",
        dest="policy_config",
        metavar="FILE",
        help="try the guards and pipeline of this config file instead of --config's "
        "(the log still comes from --config or --db)",
    )
    how.add_argument(
        "--no-overrides",
        action="store_true",
        help="ignore the runtime settings stored in the log (admin overrides); "
        "by default they apply on top of the policy, and are listed",
    )
    how.add_argument("--db", metavar="PATH", help="the decision log (default: [log] path)")
    mode = how.add_mutually_exclusive_group()
    mode.add_argument(
        "--guards-only",
        dest="mode",
        action="store_const",
        const="guards-only",
        help="re-run the guards on the recorded message and reply (default; no generation)",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="also regenerate the reply with the configured model (calls it: may cost)",
    )
    how.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=8,
        help="decisions in flight (default 8)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object (indented)")
    out.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML page")
    out.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 if any decision changes or cannot be evaluated (for CI)",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--list", action="store_true", help="show past replay runs instead")
    p.set_defaults(handler=_handler, mode="guards-only")


def _handler(args: argparse.Namespace) -> int:
    base = load_config_from_args(args)
    target = str(args.db or base.log.target)
    if is_postgres_url(target):  # shown without credentials; opened by open_log
        shown = str(PgTarget(target))
    elif not Path(target).is_file():
        return _fail(
            f"no decision log at {Path(target).resolve()} (use --db, or run `guardbot chat` to "
            "create one)",
            EXIT_NOT_FOUND,
        )
    else:
        shown = str(Path(target).resolve())
    print(f"decision log: {shown}", file=sys.stderr)
    if args.list:
        return asyncio.run(_list(args))
    try:
        selection = _selection(args)
    except WhenError as exc:
        return _fail(str(exc))
    policy, source = _policy_config(args, base)
    outcome = asyncio.run(_replay(args, base, policy, source, selection))
    return outcome if isinstance(outcome, int) else _finish(*outcome, args)


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"guardbot replay: {message}", file=sys.stderr)
    return status


def actor_name() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"cli:uid{os.getuid()}"


def _selection(args: argparse.Namespace) -> DecisionFilter:
    ids = tuple(i for chunk in args.ids or () for i in chunk.split(",") if i.strip())
    return DecisionFilter(
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until) if args.until else None,
        channel_id=args.channel,
        user_id=args.user,
        action=args.action,
        ids=tuple(i.strip() for i in ids),
        limit=args.limit or DEFAULT_LIMIT,
    )


async def _replay(
    args: argparse.Namespace,
    base: Config,
    policy: Config,
    source: str,
    selection: DecisionFilter,
) -> tuple[RunReport, dict[str, str]] | int:
    """The run itself; an int is an exit code for a problem already reported."""
    try:
        log = await open_log(
            args, read_only=False, store_text=base.log.store_text, redact_pii=base.log.redact_pii
        )
    except LogUnavailable as exc:
        try:  # e.g. an auditor's read-only copy: replay it, but the run cannot be recorded
            log = await open_log(args, read_only=True)
        except LogUnavailable:
            return _fail(str(exc))
        print(f"warning: {exc}; this run will not be recorded", file=sys.stderr)
    bot = GuardBot(policy, log)
    if args.no_overrides:
        bot.settings = RuntimeSettings(policy, NoOverrides())
    try:
        try:
            items, limited = await select(log, selection)
            await prepare(bot)  # before the progress bar: building guards can take seconds
        except SelectionError as exc:
            return _fail(str(exc), EXIT_NOT_FOUND if exc.not_found else EXIT_USAGE)
        except (ReplayError, ValueError) as exc:
            return _fail(str(exc))
        _say_overrides(bot.settings, args.no_overrides)
        options = ReplayOptions(
            selection=selection,
            mode=args.mode,
            concurrency=args.concurrency,
            actor=actor_name(),
            config_source=source,
        )
        stderr = Console(stderr=True)
        show_progress = not args.no_progress and stderr.is_terminal
        with _interrupts() as stop, _progress(stderr, len(items), show_progress) as on_result:
            report = await replay_selected(
                bot, items, options, limited=limited, on_result=on_result, stop=stop
            )
        short = await log.short_ids([r.decision_id for r in report.tally.notable])
    finally:
        await bot.close()
    return report, short


def _say_overrides(settings: RuntimeSettings, ignored: bool) -> None:
    """Which runtime overrides this replay applies: they change what it measures."""
    if ignored:
        print("runtime overrides: ignored (--no-overrides)", file=sys.stderr)
        return
    rows = override_rows(settings)
    if not rows:
        print("runtime overrides: none in the log", file=sys.stderr)
        return
    print(f"runtime overrides applied ({len(rows)}; --no-overrides to ignore):", file=sys.stderr)
    for row in rows:
        print(f"  {override_line(row)}", file=sys.stderr)


def _policy_config(args: argparse.Namespace, base: Config) -> tuple[Config, str]:
    if args.policy_config:
        return load_config(Path(args.policy_config)), str(args.policy_config)
    path = resolve_config_path(getattr(args, "config", None))
    return base, str(path) if path else "packaged defaults"


@contextmanager
def _interrupts() -> Iterator[asyncio.Event]:
    """Ctrl-C sets an event instead of raising, so the run can stop cleanly and report.

    Only the first one: the handler removes itself, so a second Ctrl-C interrupts at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first_ctrl_c() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    with suppress(NotImplementedError, RuntimeError):  # not the main thread / no signals
        loop.add_signal_handler(signal.SIGINT, first_ctrl_c)
    try:
        yield stop
    finally:
        loop.remove_signal_handler(signal.SIGINT)  # False when it already removed itself


@contextmanager
def _progress(console: Console, total: int, enabled: bool) -> Iterator[Any]:
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[bold]{task.fields[changed]}[/] changed · {task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )
    task = progress.add_task("replay", total=total, changed=0, errors=0)

    def on_result(_: ReplayResult, tally: Tally) -> None:
        summary = tally.summary()
        progress.update(
            task,
            completed=tally.done,
            changed=tally.changed,
            errors=summary["errors"] + summary["not_replayable"],
        )

    with progress:
        yield on_result


def _finish(report: RunReport, short: dict[str, str], args: argparse.Namespace) -> int:
    data = report.to_json()
    if args.json:
        print_json(data)
    else:
        print_report(Console(highlight=False), report, short)
    if args.report:
        try:  # the page holds message text: owner-only, like the log itself
            fd = open_private(args.report, os.O_WRONLY | os.O_TRUNC)
            with open(fd, "w", encoding="utf-8") as page:
                page.write(render_html(report, short))
        except OSError as exc:
            print(f"guardbot replay: cannot write {args.report}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"report written to {args.report}", file=sys.stderr)
    if data["not_replayable"]:
        print(
            f"note: {data['not_replayable']} decision(s) could not be replayed: their text was "
            "not stored ([log] store_text = false)",
            file=sys.stderr,
        )
    if report.interrupted:
        print(
            f"interrupted: {report.tally.done} of {report.tally.selected} decisions replayed "
            f"(run {report.run_id or '(not recorded)'} marked interrupted)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if args.fail_on_change and (report.tally.changed or data["errors"]):
        return EXIT_CHANGED
    return 0


async def _list(args: argparse.Namespace) -> int:
    try:
        log = await open_log(args, read_only=True)
    except LogUnavailable as exc:
        return _fail(str(exc))
    try:
        runs = await log.replay_runs(args.limit or 20)
    finally:
        await log.close()
    if args.json:
        # The runs, not every change in them (up to 1000 each): those are in the log.
        print_json(
            [
                {
                    "id": r.id,
                    "created_utc": r.created_utc.isoformat(),
                    "actor": r.actor,
                    "config_fingerprint": r.config_fingerprint,
                    "decisions_count": r.decisions_count,
                    "changed_count": r.changed_count,
                    "duration_ms": round(r.duration_ms, 3),
                    "filters": r.filters,
                    "summary": r.summary,
                    "stored_changes": len(r.changes),
                }
                for r in runs
            ]
        )
    elif runs:
        print_runs(Console(highlight=False), runs)
    else:
        print("no replay runs recorded yet")
    return 0
