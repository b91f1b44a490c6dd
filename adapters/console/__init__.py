"""The terminal adapter behind `guardbot chat`: a prompt for people, lines for pipes.

:mod:`adapters.console.chat` holds the conversation loop and the console's own
commands; :mod:`adapters.console.terminal` the prompt_toolkit prompt a person
types at; :mod:`adapters.console.lines` the reader for piped or redirected input.
"""

from adapters.console.chat import ConsoleChat, run_console
from adapters.console.lines import decode_line

__all__ = ["ConsoleChat", "decode_line", "run_console"]
