"""`guardbot settings` and `guardbot settings history`: the runtime overrides from the shell.

Admins change settings from chat; operators need to see from the server what
is in force and who changed what, when, from where, without a chat client.
Both commands open the decision log read-only, print a table (``--json`` for
machines), and flag stored overrides that today's `config.toml` no longer
accepts (a removed guard, say), which the bot skips. Refused attempts are on
record too, so anyone who can message the bot writes into these rows: every
cell goes through :func:`adapters.render.plain` (escape sequences shown, never
run), and every value through the secret masking, for rows older than it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.render import plain
from bot.cli.common import load_config_from_args, open_log, positive_int
from bot.config.runtime import RuntimeSettings
from middleware.decision_log import AdminActionRow, DecisionLog, LogUnavailable, SettingRow
from middleware.masking import mask_text

VALUE_CHARS = 60


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "settings",
        help="list the runtime settings admins changed from chat (and their history)",
        description="List runtime overrides (scope, key, value, who, when). Channel values win "
        "over global ones, global ones over config.toml. Change them from chat with "
        "`/guardbot set ...` or `/admin set ...` in `guardbot chat`.",
    )
    _common(p)
    p.set_defaults(handler=_list, settings_command=None)
    sub = p.add_subparsers(dest="settings_command", metavar="COMMAND")
    history = sub.add_parser(
        "history", help="the audit trail of admin commands: who, where, key, old -> new"
    )
    _common(history)
    history.add_argument("-n", type=positive_int, default=50, help="how many rows (default 50)")
    history.add_argument(
        "--changes", action="store_true", help="only commands that changed a setting"
    )
    history.set_defaults(handler=_history)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="the decision log (default: [log] path)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")


async def _open(args: argparse.Namespace) -> DecisionLog | None:
    try:
        return await open_log(args, read_only=True)
    except LogUnavailable as exc:
        print(f"guardbot settings: {exc}", file=sys.stderr)
        return None


async def _list(args: argparse.Namespace) -> int:
    log = await _open(args)
    if log is None:
        return 1
    try:
        runtime = RuntimeSettings(load_config_from_args(args), log)
        await runtime.load()
        rows = [r for scope in sorted(runtime.rows) for r in runtime.rows[scope].values()]
        for scope in runtime.rows:
            runtime.effective_for_scope(scope)  # fills runtime.problems for stale rows
    finally:
        await log.close()
    if args.json:
        print(json.dumps([_setting_json(r, runtime.problems) for r in rows], indent=2))
        return 0
    if not rows:
        print("No runtime settings: config.toml is in force everywhere.")
        return 0
    table = Table(title="Runtime settings (channel > global > config.toml)", title_justify="left")
    for name in ("scope", "key", "value", "updated (UTC)", "by", "note"):
        # A narrow terminal folds a long key onto a second line; it never cuts it to "guard.…".
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(
            _cell(r.scope),
            _cell(r.key),
            _cell(_show(r.value, VALUE_CHARS)),
            r.updated_utc.strftime("%Y-%m-%d %H:%M:%S"),
            _cell(r.actor),
            _cell("ignored: " + runtime.problems[(r.scope, r.key)])
            if (r.scope, r.key) in runtime.problems
            else "",
        )
    Console(soft_wrap=False).print(table)
    return 0


async def _history(args: argparse.Namespace) -> int:
    log = await _open(args)
    if log is None:
        return 1
    try:
        rows = await log.admin_actions(limit=args.n)
    finally:
        await log.close()
    if args.changes:
        rows = [r for r in rows if r.allowed and r.error is None and r.key is not None]
    if args.json:
        print(json.dumps([_action_json(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("No admin commands recorded yet.")
        return 0
    table = Table(title="Admin commands (newest first)", title_justify="left")
    for name in ("when (UTC)", "who", "where", "command", "scope", "change", "result"):
        table.add_column(name)
    for r in rows:
        change = ""
        if r.key is not None and r.error is None:
            change = f"{r.key}: {_show(r.old)} -> {_show(r.new)}"
        result = "refused" if not r.allowed else (f"rejected: {r.error}" if r.error else "ok")
        table.add_row(
            r.created_utc.strftime("%Y-%m-%d %H:%M:%S"),
            _cell(r.actor),
            _cell(f"{r.platform}:{r.channel_id}"),
            _cell(r.command),
            _cell(r.scope or ""),
            _cell(change),
            _cell(result),
        )
    Console(soft_wrap=False).print(table)
    return 0


def _show(value: Any, limit: int = 30) -> str:
    if value is None:
        return "(unset)"
    return plain(json.dumps(_masked(value), ensure_ascii=False), limit)


def _cell(text: str) -> Text:
    """Untrusted text for a table cell: masked, escaped, on one clipped line."""
    return Text(plain(mask_text(text), VALUE_CHARS))


def _masked(value: Any) -> Any:
    return mask_text(value) if isinstance(value, str) else value


def _setting_json(row: SettingRow, problems: dict[tuple[str, str], str]) -> dict[str, Any]:
    return {
        "scope": row.scope,
        "key": row.key,
        "value": _masked(row.value),
        "updated_utc": row.updated_utc.isoformat(),
        "actor": row.actor,
        "ignored": problems.get((row.scope, row.key)),
    }


def _action_json(row: AdminActionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_utc": row.created_utc.isoformat(),
        "actor": row.actor,
        "platform": row.platform,
        "channel_id": row.channel_id,
        "command": mask_text(row.command),
        "scope": row.scope,
        "key": row.key,
        "old": _masked(row.old),
        "new": _masked(row.new),
        "allowed": row.allowed,
        "error": row.error,
    }
