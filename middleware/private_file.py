"""Opening a file that holds message text: created 0600, an old one tightened to 0600.

The decision log, an export, a replay report and the console's prompt history
all hold what users wrote, so each is readable by its owner only. Only a
regular file is tightened: a path the operator points at a device
(``/dev/null``, ``/dev/stdout``) or a FIFO keeps its mode, which is the
system's. Changing it, as root, would break every other program that uses it.
"""

from __future__ import annotations

import os
import stat


def open_private(path: str | os.PathLike[str], flags: int, *, tighten: bool = True) -> int:
    """``os.open(path, flags | O_CREAT, 0o600)``, then a regular file made owner-only.

    ``tighten=False`` leaves an existing file's mode alone (a new one is still 0600),
    for a caller that must first make sure the file is its own.
    """
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        mode = os.fstat(fd).st_mode
        if tighten and stat.S_ISREG(mode) and mode & 0o077:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT and O_TRUNC
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)
