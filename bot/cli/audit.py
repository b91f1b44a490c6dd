"""`guardbot logs | show | stats | verify | prune | export`: the decision log from the shell.

Reading commands open the database read-only (``file:...?mode=ro``), so an
audit can never change what it inspects, and can run while the bot writes.
Each prints a readable table by default and JSON with ``--json``; `export`
streams every decision as JSON lines or CSV. Only `prune` writes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TextIO

from adapters.render import json_text
from bot.audit import views
from bot.audit.export import CSV_FIELDS, csv_row, record
from bot.audit.streamed import stored_with_stream
from bot.cli.common import (
    EXIT_CODES,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    load_config_from_args,
    open_log,
    positive_int,
    print_json,
)
from bot.replay.when import WhenError, parse_when
from middleware.decision_log import DecisionLog, LogUnavailable
from middleware.decision_log.postgres import is_postgres_url
from middleware.decision_log.queries import AmbiguousId
from middleware.private_file import open_private


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser(
        "logs",
        help="recent decisions, newest first, with filters and full-text search",
        description="List decisions from the log, newest first. Filters combine (AND).",
        epilog=EXIT_CODES,
    )
    _common(logs)
    logs.add_argument("-n", type=positive_int, default=20, help="how many (default 20)")
    logs.add_argument("--blocked", action="store_true", help="only blocked messages")
    logs.add_argument("--action", choices=("replied", "blocked", "error"), help="only this action")
    logs.add_argument("--guard", metavar="NAME", help="only where this guard fired (not allow)")
    logs.add_argument("--user", metavar="ID", help="only this user id")
    logs.add_argument("--channel", metavar="ID", help="only this channel id")
    _window(logs)
    logs.add_argument("-q", "--query", metavar="TEXT", help="full-text search of message and reply")
    logs.set_defaults(handler=_logs)

    show = subparsers.add_parser(
        "show",
        help="one decision in full: verdicts, candidates, choice, timings, delivery",
        epilog=EXIT_CODES,
    )
    _common(show)
    show.add_argument("id", help="decision id, or a unique prefix of it (7+ characters)")
    show.set_defaults(handler=_show)

    stats = subparsers.add_parser(
        "stats", help="block rates, latency by stage, time saved, tokens and cost"
    )
    _common(stats)
    _window(stats, since_default="24h")
    stats.set_defaults(handler=_stats)

    verify = subparsers.add_parser(
        "verify", help="check the hash chain: names the first decision changed, inserted or deleted"
    )
    _common(verify)
    verify.add_argument(
        "--anchor",
        metavar="SEQ:SHA256",
        type=_anchor,
        help="also check that record SEQ still has the hash an earlier verify printed",
    )
    verify.set_defaults(handler=_verify)

    prune = subparsers.add_parser(
        "prune", help="remove old decisions, keeping the hash chain verifiable"
    )
    _common(prune)
    prune.add_argument(
        "--older-than", required=True, metavar="AGE", help="e.g. 90d, 12w, or a date (UTC)"
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(handler=_prune)

    export = subparsers.add_parser("export", help="every decision as JSON lines or CSV")
    export.add_argument("--db", metavar="PATH", help="the decision log (default: [log] path)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (0600), not stdout")
    _window(export)
    export.set_defaults(handler=_export)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="the decision log (default: [log] path)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")


def _window(p: argparse.ArgumentParser, since_default: str | None = None) -> None:
    extra = f" (default {since_default})" if since_default else ""
    p.add_argument(
        "--since", default=since_default, metavar="WHEN", help=f"e.g. 24h, 7d, 2024-05-01{extra}"
    )
    p.add_argument("--until", metavar="WHEN", help="e.g. 1h, 2024-05-02 (exclusive)")


class _Fail(Exception):
    """A clear one-line error for the user; exit status 1 (2 for bad arguments)."""

    def __init__(self, message: str, status: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.status = status


async def _open(args: argparse.Namespace, *, read_only: bool = True) -> DecisionLog:
    if not read_only:  # prune writes, but never starts an empty log where none was
        target = str(args.db) if args.db else load_config_from_args(args).log.target
        if not is_postgres_url(target) and not await asyncio.to_thread(os.path.isfile, target):
            raise _Fail(f"no decision log at {target} (nothing to prune)")
    try:
        return await open_log(args, read_only=read_only)
    except LogUnavailable as exc:
        raise _Fail(str(exc)) from None


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text)
    except WhenError as exc:
        raise _Fail(f"{option}: {exc}", EXIT_USAGE) from None


def _command(fn: Any) -> Any:
    """Turn _Fail and bad filter values into one line on stderr and an exit status."""

    async def run(args: argparse.Namespace) -> int:
        try:
            return int(await fn(args))
        except _Fail as exc:
            print(f"guardbot {args.command}: {exc}", file=sys.stderr)
            return exc.status
        except LogUnavailable as exc:  # e.g. a damaged file met while reading
            print(f"guardbot {args.command}: {exc}", file=sys.stderr)
            return EXIT_NOT_FOUND
        except ValueError as exc:
            print(f"guardbot {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


@_command
async def _logs(args: argparse.Namespace) -> int:
    filters = {
        "action": args.action,
        "blocked": True if args.blocked else None,
        "guard": args.guard,
        "user_id": args.user,
        "channel_id": args.channel,
        "since": _when(args.since, "--since"),
        "until": _when(args.until, "--until"),
        "text": args.query,
    }
    log = await _open(args)
    try:
        found = await log.query_stored(limit=args.n, **filters)
        if args.json:  # the table has no column for a stream: read them for JSON only
            found = [await stored_with_stream(log, s) for s in found]
        short = await log.short_ids([s.decision.id for s in found])
    finally:
        await log.close()
    if args.json:
        print_json([record(s) for s in found])
    else:
        views.logs_table(found, short)
    return 0


@_command
async def _show(args: argparse.Namespace) -> int:
    log = await _open(args)
    try:
        found = await log.get_stored(args.id.strip())
        stream = ""
        if found is not None:
            found = await stored_with_stream(log, found)
        elif (shown := await log.stream_of(args.id.strip())) is not None:
            stream = views.undecided(len(shown.chunks), shown.shown_chars)
    except AmbiguousId as exc:
        raise _Fail(str(exc), EXIT_USAGE) from None
    finally:
        await log.close()
    if found is None:
        raise _Fail(f"no decision {args.id!r} in the log{stream}", EXIT_NOT_FOUND)
    if args.json:
        print_json(record(found))
    else:
        views.show(found)
    return 0


@_command
async def _stats(args: argparse.Namespace) -> int:
    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    log = await _open(args)
    try:
        data = await log.stats(since=since, until=until)
    finally:
        await log.close()
    if args.json:
        print_json(data)
    else:
        views.stats(data)
    return 0


_ANCHOR = re.compile(r"([0-9]{1,19}):([0-9a-fA-F]{64})")  # ASCII only: str.isdigit takes '٣'


def _anchor(text: str) -> tuple[int, str]:
    """SEQ:SHA256 as verify prints the head: a record's seq (1 .. 2**63-1, what the
    log can hold; 0 is no record) and 64 hex digits."""
    found = _ANCHOR.fullmatch(text.strip())
    if found is None or not 1 <= int(found[1]) < 2**63:
        raise argparse.ArgumentTypeError(
            "expected SEQ:SHA256 as verify prints the head: SEQ a record's number "
            "(1 to 9223372036854775807), SHA256 64 hex digits"
        )
    return int(found[1]), found[2].lower()


@_command
async def _verify(args: argparse.Namespace) -> int:
    log = await _open(args)
    anchor: dict[str, Any] | None = None
    with _sigterm_cancels() as stopped:
        try:
            report = await log.verify()
            integrity = await log.integrity_check()
            if args.anchor is not None:
                problem = await log.check_anchor(*args.anchor)
                anchor = {"seq": args.anchor[0], "sha256": args.anchor[1],
                          "ok": problem is None, "message": problem or "ok"}  # fmt: skip
        except asyncio.CancelledError:
            if not stopped or (task := asyncio.current_task()) is None:
                raise
            task.uncancel()  # our own cancellation, from SIGTERM: end as a normal exit
            print("guardbot verify: stopped by SIGTERM before the end", file=sys.stderr)
            return 128 + signal.SIGTERM
        finally:
            await log.close()
    ok = report.ok and integrity == "ok" and (anchor is None or anchor["ok"])
    if args.json:
        data = {**asdict(report), "chain_ok": report.ok, "ok": ok, "integrity_check": integrity}
        print_json(data if anchor is None else {**data, "anchor": anchor})
    else:
        views.verify(report, integrity, anchor)
    return 0 if ok else 1


@contextmanager
def _sigterm_cancels() -> Iterator[list[bool]]:
    """While verify runs, SIGTERM (``timeout``, a service manager) cancels it as Ctrl-C
    does, so its temporary copy of the log, which holds message texts outside prune's
    retention, is removed; the default action would end the process on the spot.
    Yields a list that holds True once the signal came."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    stopped: list[bool] = []

    def stop() -> None:
        stopped.append(True)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
        yield stopped
        return
    try:
        yield stopped
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@_command
async def _prune(args: argparse.Namespace) -> int:
    cutoff = _when(args.older_than, "--older-than")
    assert cutoff is not None
    if cutoff > datetime.now(UTC):
        raise _Fail("--older-than must be in the past", EXIT_USAGE)
    log = await _open(args, read_only=args.dry_run)
    try:
        # What goes is the chain's prefix older than the cutoff: counted before, it is what
        # the prune removes (records written meanwhile are newer than any cutoff).
        kinds = await log.prunable(cutoff)
        if args.dry_run:
            removed, report = kinds.get("decision", 0), None
        else:
            removed, report = await log.prune(cutoff)
    except LogUnavailable as exc:
        raise _Fail(str(exc)) from None
    finally:
        await log.close()
    result = {
        "cutoff_utc": cutoff.isoformat(),
        "dry_run": args.dry_run,
        "removed": removed,
        "removed_by_kind": kinds,
        "chain_ok": report.ok if report else None,
        "remaining": report.checked if report else None,
    }
    if args.json:
        print_json(result)
    else:
        views.pruned(result, report)
    return 0 if report is None or report.ok else 1


@_command
async def _export(args: argparse.Namespace) -> int:
    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    log = await _open(args)
    count = 0
    try:
        with _output(args.output) as out:
            writer = csv.DictWriter(out, fieldnames=CSV_FIELDS) if args.format == "csv" else None
            if writer:
                writer.writeheader()
            async for stored in log.iter_stored(since=since, until=until):
                # CSV has no column for a stream's chunks: skip reading them
                rec = record(stored if writer else await stored_with_stream(log, stored))
                if writer:
                    writer.writerow(csv_row(rec))
                else:
                    out.write(json_text(rec, indent=None) + "\n")
                count += 1
    finally:
        await log.close()
    if args.output:
        print(f"exported {count} decisions to {args.output}", file=sys.stderr)
    return 0


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:  # an export holds message text: owner-only, like the log itself
        fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        raise _Fail(f"cannot write {path}: {exc.strerror}") from None
    with open(fd, "w", encoding="utf-8", newline="") as out:
        yield out
