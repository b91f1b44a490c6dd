"""What the streaming tests check on a fake platform's record of visible changes.

Both fakes log every change a user could see as ``(time, message id, text or
None when deleted)``. :func:`states` replays that log into every state of the
reply as a whole; :func:`words_shown` reads one state as words, the added code
fences dropped, so a test can say each state is a prefix of what was released.
:class:`Clock` is a controllable clock whose sleeps return at once, so an
update interval is proven in virtual time, not waited for.
"""

from __future__ import annotations

import asyncio

Change = tuple[float, str, "str | None"]


class Clock:
    """Virtual time: ``sleep`` moves it forward instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def states(changes: list[Change]) -> list[list[str]]:
    """Every state the reply was in: its messages' texts, in order of posting."""
    current: dict[str, str] = {}
    seen: list[list[str]] = []
    for _, message, text in changes:
        if text is None:
            current.pop(message, None)
        else:
            current[message] = text
        seen.append(list(current.values()))
    return seen


def words_shown(messages: list[str]) -> list[str]:
    """The words of a state, fence lines (added to keep code blocks whole) left out."""
    lines = "\n".join(messages).split("\n")
    return " ".join(line for line in lines if not line.strip().startswith("```")).split()


def write_times(changes: list[Change]) -> list[float]:
    return [at for at, _, _ in changes]
