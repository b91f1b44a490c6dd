"""`guardbot screen`: run the configured guards of one stage on texts from the shell.

It is how an admin tries a policy before deploying it: the guards are built
from the same config (and the same builder) as the bot's and run by the
pipeline's own screening (same timeouts, ``on_error`` and chained
redactions), except that every guard that applies runs to the end (no
stopping at the first block, so all verdicts show). The runtime overrides
stored in the decision log apply, as they do in the bot (listed on stderr;
``--no-overrides`` for the file alone), so `screen` says what the bot would
do. The result is a table, or with ``--json`` one indented JSON list (one
object per text). ``-`` reads one message per line from stdin (invalid UTF-8
is replaced, not fatal). LLM guards on the offline echo model report
``skipped`` and say why. ``--fail-on-block`` exits 1 when any text is blocked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator

from adapters.render import plain
from bot.audit.overrides import override_line, override_rows
from bot.cli.common import (
    EXIT_CODES,
    EXIT_NOT_FOUND,
    load_config_from_args,
    masked,
    print_json,
    runtime_settings,
)
from bot.config.policies import PolicyBuilder
from bot.config.providers import ModelProvider
from bot.config.runtime import GLOBAL, RuntimeSettings, channel_scope
from middleware.guards.guard import GuardContext
from middleware.guards.llm_guard import offline_notice
from middleware.masking import mask_text
from middleware.pipeline.screening import screen
from middleware.types import ChatRequest, Stage, Verdict


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "screen",
        help="run the configured guards on text and print their verdicts",
        description="Run the guards of one stage on each text and print every verdict, "
        "with the runtime overrides of the decision log applied as in the bot.",
        epilog=EXIT_CODES,
    )
    p.add_argument("text", nargs="+", help="the text to screen, or - to read one per line")
    p.add_argument("--stage", choices=("input", "output"), default="input", help="default: input")
    p.add_argument("--channel", default="", help="channel id (guards limited to channels)")
    p.add_argument(
        "--platform",
        default="console",
        help="platform of --channel, for its channel overrides (default: console)",
    )
    p.add_argument(
        "--no-overrides", action="store_true", help="the config file alone, without the log's"
    )
    p.add_argument(
        "--fail-on-block", action="store_true", help="exit 1 if any text is blocked (for CI)"
    )
    p.add_argument("--prompt", default="", help="output stage: the user message replied to")
    p.add_argument("--json", action="store_true", help="JSON: a list, one object per text")
    p.set_defaults(handler=_screen)


def _texts(args: argparse.Namespace) -> Iterator[str]:
    if args.text == ["-"]:
        for raw in sys.stdin.buffer:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.strip():
                yield line
    else:
        yield " ".join(args.text)


def _row(v: Verdict) -> str:
    score = "" if v.score is None else f"{v.score:.2f}"
    extra = f" (confidence {v.confidence:.2f})" if v.confidence is not None else ""
    return (
        f"  {plain(v.guard):<16} {v.outcome.value:<8} {plain(v.category, 34):<34} {score:>5} "
        f"{v.latency_ms:>8.2f}  {plain(v.reason)}{extra}"
    )


def _print_table(index: int, text: str, verdicts: list[Verdict], redacted: str) -> None:
    blocking = [v.guard for v in verdicts if v.blocking]
    status = f"BLOCKED by {', '.join(blocking)}" if blocking else "allowed"
    # Masked before it is shortened: a key cut at 70 characters no longer looks like one.
    print(f"[{index}] {plain(mask_text(text), 70)!r}: {status}")
    print(f"  {'guard':<16} {'outcome':<8} {'category':<34} {'score':>5} {'ms':>8}  reason")
    for v in verdicts:
        print(_row(v))
        for m in v.members:
            print("    " + _row(m).strip())
    if redacted != text and not blocking:
        print(f"  redacted: {plain(mask_text(redacted))!r}")


async def _run(args: argparse.Namespace) -> int:
    base = load_config_from_args(args)
    settings = await runtime_settings(base, ignore=args.no_overrides)
    config, _ = settings.effective(args.platform, args.channel)
    _say_overrides(settings, args)
    models = ModelProvider(config.llm)
    results: list[dict[str, object]] = []
    blocked = 0
    try:
        stage = Stage(args.stage)
        guards = [
            g for g in PolicyBuilder(models).guards(config) if g.config.applies(stage, args.channel)
        ]
        if not guards:
            print(f"guardbot: no enabled guards for the {stage.value} stage", file=sys.stderr)
        skipped = offline_notice((g.config.name, g.guard) for g in guards)
        for notice in (models.notice(), skipped):
            if notice:
                print(f"notice: {notice}", file=sys.stderr)
        for index, text in enumerate(_texts(args), start=1):
            request = ChatRequest(
                platform="cli",
                channel_id=args.channel,
                text=text if stage is Stage.INPUT else args.prompt,
            )
            screened = await screen(guards, text, GuardContext(stage, request), every_guard=True)
            verdicts, redacted = screened.verdicts, screened.text
            blocked += screened.blocked
            if args.json:
                results.append(_json(text, stage, verdicts, redacted))
            else:
                _print_table(index, text, verdicts, redacted)
                sys.stdout.flush()
    finally:
        await models.close()
    if args.json:  # what was typed, as the table shows it: keys and configured values masked
        print_json(masked(results))
    return EXIT_NOT_FOUND if args.fail_on_block and blocked else 0


def _say_overrides(settings: RuntimeSettings, args: argparse.Namespace) -> None:
    """The overrides that apply here, on stderr: they change what the guards do."""
    if args.no_overrides:
        return
    scopes = {GLOBAL, channel_scope(args.platform, args.channel)}
    for row in override_rows(settings):
        if row["scope"] in scopes:
            print(f"override: {override_line(row)} (--no-overrides to ignore)", file=sys.stderr)


def _json(text: str, stage: Stage, verdicts: list[Verdict], redacted: str) -> dict[str, object]:
    blocking = [v.guard for v in verdicts if v.blocking]
    return {
        "text": text,
        "stage": stage.value,
        "blocked": bool(blocking),
        "blocked_by": blocking,
        "redacted_text": redacted if redacted != text else None,
        "verdicts": [v.model_dump(mode="json", exclude_defaults=True) for v in verdicts],
    }


def _screen(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
