"""Parses admin command text (after `/guardbot` or `/admin`) into a :class:`Command`.

The text is hostile input: it may be empty, huge, half-quoted or full of
unicode. Everything but a ``set`` value is split with :mod:`shlex`; a ``set``
value is taken verbatim (minus one pair of outer quotes), because prompts and
refusals contain apostrophes (``can't``) that shlex would reject. Every
failure is a :class:`ParseError` whose message ends with the right usage line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.replay.when import WhenError, parse_when

MAX_COMMAND_CHARS = 4000
MAX_RECENT = 50

# command -> (usage, summary); the order is the order of `help`.
USAGE: dict[str, tuple[str, str]] = {
    "help": ("help [COMMAND]", "list the commands, or explain one"),
    "status": ("status", "model, guards, best-of-N, selection, recent block rate"),
    "set": ("set KEY VALUE [--here]", "change a setting globally, or in this channel"),
    "reset": ("reset KEY [--here]", "remove an override (back to global / config.toml)"),
    "guard": (
        "guard list | enable NAME | disable NAME | threshold NAME X  [--here]",
        "show or change guards",
    ),
    "recent": ("recent [N] [--blocked] [--here]", "the last N decisions (default 10)"),
    "why": ("why ID", "one decision explained"),
    "stats": ("stats [--since 24h]", "counts, block rate and latency over a period"),
    "replay": ("replay [--since 24h]", "re-run recent decisions' guards under today's settings"),
}
_FLAGS: dict[str, set[str]] = {
    "status": set(),
    "guard": {"--here", "--global"},
    "recent": {"--blocked", "--here"},
    "why": set(),
    "stats": {"--since"},
    "replay": {"--since"},
    "help": set(),
}
_WITH_VALUE = {"--since"}
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}
_TRAILING_HERE = re.compile(r"(?:^|\s+)--here$")
_DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ParseError(ValueError):
    """Command text that cannot be understood; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # help | status | set | reset | guard list | recent | why | stats | replay
    key: str | None = None
    value: str | None = None  # `set`: the raw value text
    here: bool = False
    blocked: bool = False
    count: int = 10
    since: datetime | None = None
    target: str | None = None  # `help` topic, `why` decision id


def usage(name: str) -> str:
    return f"usage: {USAGE[name][0]}"


def parse(text: str, *, now: datetime | None = None) -> Command:
    text = text.replace("\x00", "").strip()
    if len(text) > MAX_COMMAND_CHARS:
        raise ParseError(f"command too long ({len(text)} characters; at most {MAX_COMMAND_CHARS})")
    if not text:
        return Command("help")
    head, rest = _first_word(text)
    name = head.lower().lstrip("/")
    if name in ("set", "reset"):
        return _parse_setting(name, rest)
    if name not in USAGE:
        raise ParseError(f"unknown command {_clip(head)!r}; try `help`")
    args, flags = _split(name, rest)
    now = now or datetime.now(UTC)
    since = _parse_since(flags["--since"], now) if "--since" in flags else None
    if name == "help":
        topic = args[0].lower() if args else None
        if topic is not None and topic not in USAGE:
            raise ParseError(f"no command {_clip(topic)!r}; commands: {', '.join(USAGE)}")
        return Command("help", target=topic)
    if name in ("status", "stats", "replay"):
        _no_args(name, args)
        return Command(name, since=since, here="--here" in flags)
    if name == "recent":
        if len(args) > 1:
            raise ParseError(usage(name))
        count = _parse_count(args[0]) if args else 10
        return Command(name, count=count, blocked="--blocked" in flags, here="--here" in flags)
    if name == "why":
        if len(args) != 1 or not _DECISION_ID.fullmatch(args[0]):
            raise ParseError("give one decision id (from `recent`); " + usage(name))
        return Command(name, target=args[0])
    return _parse_guard(args, here="--here" in flags)


def _parse_guard(args: list[str], *, here: bool) -> Command:
    sub = args[0].lower() if args else ""
    if sub == "list" and len(args) == 1:
        return Command("guard list")
    if sub in ("enable", "disable") and len(args) == 2:
        value = "true" if sub == "enable" else "false"
        return Command("set", key=f"guard.{args[1]}.enabled", value=value, here=here)
    if sub == "threshold" and len(args) == 3:
        return Command("set", key=f"guard.{args[1]}.threshold", value=args[2], here=here)
    raise ParseError(usage("guard"))


def _parse_setting(name: str, rest: str) -> Command:
    """`set [--here] KEY VALUE [--here]`, `reset [--here] KEY [--here]`; VALUE kept verbatim."""
    here = False
    while rest.startswith("--"):
        flag, rest = _first_word(rest)
        if flag == "--here":
            here = True
        elif flag != "--global":
            raise ParseError(f"unknown option {_clip(flag)!r}; " + usage(name))
    key, value = _first_word(rest)
    if m := _TRAILING_HERE.search(value):
        here, value = True, value[: m.start()]
    if not key:
        raise ParseError(usage(name))
    if name == "reset":
        if value:
            raise ParseError(f"reset takes only a key; {usage(name)}")
        return Command("reset", key=key, here=here)
    if not value:
        raise ParseError(f"missing value for {_clip(key)!r}; {usage(name)}")
    if len(value) >= 2 and _QUOTE_PAIRS.get(value[0]) == value[-1]:
        value = value[1:-1]
    return Command("set", key=key, value=value, here=here)


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else "") if parts else ("", "")


def _split(name: str, rest: str) -> tuple[list[str], dict[str, str]]:
    try:
        tokens = shlex.split(rest.translate(_SMART_QUOTES))
    except ValueError as exc:
        raise ParseError(f"could not read the command ({exc}); {usage(name)}") from None
    args: list[str] = []
    flags: dict[str, str] = {}
    it = iter(tokens)
    for token in it:
        if not token.startswith("--"):
            args.append(token)
            continue
        flag, eq, inline = token.partition("=")
        if flag not in _FLAGS[name]:
            raise ParseError(f"unknown option {_clip(flag)!r}; {usage(name)}")
        if flag in _WITH_VALUE:
            value = inline if eq else next(it, None)
            if not value:
                raise ParseError(f"{flag} needs a value, e.g. {flag} 24h")
            flags[flag] = value
        else:
            flags[flag] = ""
    return args, flags


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise ParseError(f"unexpected {_clip(args[0])!r}; {usage(name)}")


def _parse_count(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= MAX_RECENT:
        raise ParseError(f"N must be a whole number from 1 to {MAX_RECENT}; {usage('recent')}")
    return int(text)


def _parse_since(text: str, now: datetime) -> datetime:
    try:
        return parse_when(text, now=now)
    except WhenError as exc:
        raise ParseError(f"--since: {exc}") from None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
