"""Parses admin command text (after `/guardbot` or `/admin`) against the command registry.

The text is hostile input: it may be empty, huge, half-quoted or full of
unicode. What a command accepts comes from its declaration
(:mod:`bot.admin.registry`), so the parser, ``help`` and Discord's form cannot
disagree. Arguments are split with :mod:`shlex`, except a ``text`` argument
(the ``set`` value), which is taken verbatim (minus one pair of outer quotes),
because prompts and refusals contain apostrophes (``can't``) that shlex would
reject. Every failure is a :class:`ParseError` whose message ends with the
right usage line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapters.admin import ArgSpec
from bot.admin.context import Command, Registry, Spec
from bot.replay.when import WhenError, parse_when

MAX_COMMAND_CHARS = 4000
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}
_TRAILING_HERE = re.compile(r"(?:^|\s+)--here$")
_DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_GLOBAL = "--global"  # accepted wherever --here is, meaning the default


class ParseError(ValueError):
    """Command text that cannot be understood; the message says how to write it."""


def usage(registry: Registry, word: str) -> str:
    """The usage line(s) of every command starting with ``word``."""
    return "usage: " + " | ".join(c.usage() for c in registry.under(word))


def parse(registry: Registry, text: str, *, now: datetime | None = None) -> tuple[Spec, Command]:
    text = text.replace("\x00", "").strip()
    if len(text) > MAX_COMMAND_CHARS:
        raise ParseError(f"command too long ({len(text)} characters; at most {MAX_COMMAND_CHARS})")
    if not text:
        text = "help"
    head, rest = _first_word(text)
    word = head.lower().lstrip("/")
    candidates = registry.under(word)
    if not candidates:
        raise ParseError(f"unknown command {_clip(head)!r}; try `help`")
    spec = candidates[0]
    if len(spec.words) > 1:  # a group: the next word picks the command
        sub, rest = _first_word(rest)
        found = [c for c in candidates if c.words[1] == sub.lower()]
        if not found:
            raise ParseError(usage(registry, word))
        spec = found[0]
    if any(a.kind == "text" for a in spec.args):
        return spec, _parse_verbatim(registry, spec, rest)
    values = _parse_words(registry, spec, rest, now or datetime.now(UTC))
    return spec, replace(Command(spec.name), **values)


def _parse_words(registry: Registry, spec: Spec, rest: str, now: datetime) -> dict[str, Any]:
    word = spec.words[0]
    try:
        tokens = shlex.split(rest.translate(_SMART_QUOTES))
    except ValueError as exc:
        raise ParseError(f"could not read the command ({exc}); {usage(registry, word)}") from None
    flags = {a.flag: a for a in spec.args if not a.positional}
    positionals = [a for a in spec.args if a.positional]
    values: dict[str, Any] = {}
    given: list[str] = []
    it = iter(tokens)
    for token in it:
        if not token.startswith("--"):
            given.append(token)
            continue
        flag, eq, inline = token.partition("=")
        if flag == _GLOBAL and "--here" in flags and spec.permission == "change":
            continue
        arg = flags.get(flag)
        if arg is None:
            raise ParseError(f"unknown option {_clip(flag)!r}; {usage(registry, word)}")
        if arg.kind == "switch":
            values[_field(arg)] = True
            continue
        raw = inline if eq else next(it, None)
        if not raw:
            raise ParseError(f"{flag} needs a value, e.g. {flag} {arg.example}")
        values[_field(arg)] = _since(raw, now)
    if len(given) > len(positionals):
        extra = given[len(positionals)]
        raise ParseError(f"unexpected {_clip(extra)!r}; {usage(registry, word)}")
    for arg, raw in zip(positionals, given + [""] * len(positionals), strict=False):
        if not raw:
            if arg.required:
                raise ParseError(_invalid(registry, spec, arg))
            continue
        values[_field(arg)] = _value(registry, spec, arg, raw)
    return values


def _value(registry: Registry, spec: Spec, arg: ArgSpec, raw: str) -> object:
    if arg.kind == "count":
        if not raw.isdecimal() or not 1 <= int(raw) <= arg.maximum:
            raise ParseError(_invalid(registry, spec, arg))
        return int(raw)
    if arg.kind == "topic":
        topic = raw.lower()
        if topic not in registry.topics():
            commands = ", ".join(registry.topics())
            raise ParseError(f"no command {_clip(topic)!r}; commands: {commands}")
        return topic
    if arg.name == "decision" and not _DECISION_ID.fullmatch(raw):
        raise ParseError(_invalid(registry, spec, arg))
    return raw


def _invalid(registry: Registry, spec: Spec, arg: ArgSpec) -> str:
    """What to say about a missing or malformed positional."""
    line = usage(registry, spec.words[0])
    if arg.kind == "count":
        return f"{arg.metavar} must be a whole number from 1 to {arg.maximum}; {line}"
    if arg.name == "decision":
        return f"give one decision id (from `recent`); {line}"
    return line


def _parse_verbatim(registry: Registry, spec: Spec, rest: str) -> Command:
    """`set [--here] KEY VALUE [--here]`: the last argument is kept verbatim."""
    line = usage(registry, spec.words[0])
    here = False
    while rest.startswith("--"):
        flag, rest = _first_word(rest)
        if flag == "--here":
            here = True
        elif flag != _GLOBAL:
            raise ParseError(f"unknown option {_clip(flag)!r}; {line}")
    key, value = _first_word(rest)
    if m := _TRAILING_HERE.search(value):
        here, value = True, value[: m.start()]
    if not key:
        raise ParseError(line)
    if not value:
        raise ParseError(f"missing value for {_clip(key)!r}; {line}")
    if len(value) >= 2 and _QUOTE_PAIRS.get(value[0]) == value[-1]:
        value = value[1:-1]
    return Command(spec.name, key=key, value=value, here=here)


def _field(arg: ArgSpec) -> str:
    return "name_arg" if arg.name == "name" else arg.name


def _first_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else "") if parts else ("", "")


def _since(text: str, now: datetime) -> datetime:
    try:
        return parse_when(text, now=now)
    except WhenError as exc:
        raise ParseError(f"--since: {exc}") from None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
