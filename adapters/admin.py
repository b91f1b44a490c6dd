"""The admin commands as a platform sees them: declarations, and the text each one becomes.

The application declares every admin command once (``bot/admin/registry.py``):
its words, arguments, help, permission and handler. Adapters sit below the
application in the import graph, so the declaration's *types* live here, and
an adapter receives the declared commands from its handler
(:attr:`adapters.base.MessageHandler.admin_commands`). The console and Slack
pass the typed text through as it is; Discord builds its slash-command form
from the same declarations and turns a filled-in form back into that text with
:meth:`CommandSpec.text`, which the application's parser reads.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

H = TypeVar("H")

# word: one word (shell quoting allowed); text: the rest of the line, verbatim;
# count: a whole number in [1, maximum]; topic: the name of a command;
# switch: a --NAME flag; option: --NAME VALUE.
ArgKind = Literal["word", "text", "count", "topic", "switch", "option"]
# read: an admin may run it, it changes nothing; change: it writes a setting.
Permission = Literal["read", "change"]


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str  # the form's field name, and the flag for switches and options (--NAME)
    help: str
    kind: ArgKind = "word"
    required: bool = True
    metavar: str = ""  # how the usage line names a positional, e.g. KEY
    maximum: int = 0  # count only
    example: str = ""  # option only: shown in the usage line, e.g. 24h

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def positional(self) -> bool:
        return self.kind not in ("switch", "option")

    @property
    def needed(self) -> bool:
        """Must be given: a required positional (a switch or option never is)."""
        return self.required and self.positional

    def usage(self) -> str:
        if self.kind == "switch":
            return f"[{self.flag}]"
        if self.kind == "option":
            return f"[{self.flag} {self.example or self.name.upper()}]"
        return self.metavar if self.required else f"[{self.metavar}]"


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[H]):
    """One admin command: ``words`` are what is typed (``("guard", "enable")``)."""

    words: tuple[str, ...]
    help: str
    handler: H
    args: tuple[ArgSpec, ...] = ()
    permission: Permission = "read"

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def usage(self) -> str:
        return " ".join([self.name, *(a.usage() for a in self.args)])

    def text(self, values: Mapping[str, Any]) -> str:
        """The command text for filled-in form ``values`` (as the console would type it)."""
        parts = [self.name]
        for arg in sorted(self.args, key=lambda a: not a.positional):
            value = values.get(arg.name)
            if value is None or value is False or value == "":
                continue
            if arg.kind == "switch":
                parts.append(arg.flag)
            elif arg.kind == "option":
                parts += [arg.flag, shlex.quote(str(value).strip())]
            elif arg.kind == "text":
                parts.append(str(value).strip())  # taken verbatim by the parser
            elif arg.kind == "word":
                parts.append(shlex.quote(str(value).strip()))
            else:
                parts.append(str(value))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class AdminCommands(Generic[H]):
    """Every admin command, in the order ``help`` lists them; ``groups`` describe
    the first word of multi-word commands (``guard``)."""

    commands: tuple[CommandSpec[H], ...]
    groups: Mapping[str, str] = field(default_factory=dict)

    def topics(self) -> list[str]:
        """The first words, in order: what ``help TOPIC`` accepts."""
        return list(dict.fromkeys(c.words[0] for c in self.commands))

    def under(self, word: str) -> list[CommandSpec[H]]:
        return [c for c in self.commands if c.words[0] == word]
