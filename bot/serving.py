"""What a process that serves messages for long sets up once: the garbage collector.

Kept apart from :class:`~bot.app.GuardBot` because it is process-wide: opening a
bot (tests, one-shot commands) must leave Python's defaults alone.
"""

from __future__ import annotations

import gc


def tune_gc_for_serving() -> None:
    """Tune the cyclic garbage collector for a process that serves messages from now on.

    What start built (imports, config, the guards' tables: 100,000+ objects) lives
    as long as the process, and every full collection walked it (50-130 ms each, 8%
    of a message's CPU under load), so it is frozen once, out of the collector's
    sight. And the youngest generation is collected after 10,000 net allocations
    instead of 700: the objects of the messages in flight (thousands, none of them
    garbage) were walked every few messages, another 4% of the CPU.

    Both are process-wide, so only what serves for long takes them (`guardbot run`
    and `guardbot chat` once the bot is open, and the benchmarks of that path):
    opening a bot does not, so tests and one-shot commands keep Python's defaults.
    A second call changes nothing.
    """
    if not gc.get_freeze_count():
        gc.collect()  # start's own garbage is freed, not frozen for good
        gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
