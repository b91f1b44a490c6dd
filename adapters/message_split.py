"""Split a long reply into platform-sized messages without breaking its markdown.

Chat platforms cap one message (Discord at 2,000 characters), and a naive cut
lands mid-word or inside a fenced code block, which then renders as prose in
one message and swallows the next. This splitter cuts at paragraph breaks,
then line breaks, then spaces; a code block that fits in one message is moved
whole to the next one, and a block too big for any message is closed at the
cut and reopened (same language) in the next. Only a single word longer than a
whole message is ever cut inside. Platform-neutral: Slack may reuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = "```"
CLOSE = "\n" + FENCE
MIN_LIMIT = 20
_MAX_LANG = 10
_LANG = re.compile(r"[\w+#.-]+")
_TOKENS = re.compile(r"\S+|\s+")
_FENCE_ONLY = re.compile(r"\s*```[\w+#.-]*\s*")


def split_message(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters each.

    Empty or whitespace-only text gives ``[]`` (nothing to send). Joined back
    together the pieces hold the same words in the same order; fences added
    to keep a code block valid across a cut are the only new text.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT} characters, got {limit}")
    text = text.strip("\n").rstrip()
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    return _Splitter(limit).split(text.split("\n"))


def fence_after(line: str, fence: str | None) -> str | None:
    """The open fence after ``line`` (None outside code), given the one before it.

    Public because :mod:`adapters.live` lays out streamed messages with the
    same reading of fences as the splitter, so both agree on what is code.
    """
    if line.count(FENCE) % 2 == 0:
        return fence
    if fence is not None:
        return None
    start = line.lstrip()
    lang = _LANG.match(start[len(FENCE) :]) if start.startswith(FENCE) else None
    # A language tag is short; anything longer is content, so reopen bare.
    return FENCE + (lang.group(0) if lang and len(lang.group(0)) <= _MAX_LANG else "")


def open_fence(text: str, fence: str | None = None) -> str | None:
    """The fence still open at the end of ``text`` (None: not inside code)."""
    for line in text.split("\n"):
        fence = fence_after(line, fence)
    return fence


def _wrap(line: str, width: int) -> list[str]:
    """Break one over-long line at spaces; only a word wider than ``width`` is cut."""
    pieces: list[str] = []
    current = ""
    for token in _TOKENS.findall(line):
        if len(current) + len(token) <= width:
            current += token
            continue
        if token.isspace():
            pieces.append(current.rstrip())
            current = ""
            continue
        if current.strip():
            pieces.append(current.rstrip())
        while len(token) > width:
            pieces.append(token[:width])
            token = token[width:]
        current = token
    if current.strip():
        pieces.append(current.rstrip())
    return [p for p in pieces if p]


@dataclass
class _Entry:
    line: str
    fence_after: str | None  # the open fence once this line is included


@dataclass
class _Splitter:
    limit: int
    chunks: list[str] = field(default_factory=list)
    current: list[_Entry] = field(default_factory=list)
    reopened: bool = False  # current[0] is a fence we reopened, not content
    size: int = 0  # characters of "\n".join(current), kept up to date for speed

    @property
    def fence(self) -> str | None:
        return self.current[-1].fence_after if self.current else None

    def _length(self, extra: str | None = None, fence_after: str | None = None) -> int:
        """Size of the current message, plus ``extra`` as one more line, once closed."""
        if extra is None:
            return self.size + (len(CLOSE) if self.fence else 0)
        size = self.size + len(extra) + (1 if self.current else 0)
        return size + (len(CLOSE) if fence_after else 0)

    def _set(self, entries: list[_Entry]) -> None:
        self.current = entries
        self.size = sum(len(e.line) for e in entries) + max(0, len(entries) - 1)

    def _append(self, entry: _Entry) -> None:
        self.size += len(entry.line) + (1 if self.current else 0)
        self.current.append(entry)

    def _has_content(self) -> bool:
        body = self.current[1:] if self.reopened else self.current
        return any(e.line.strip() for e in body)

    def split(self, lines: list[str]) -> list[str]:
        index = 0
        while index < len(lines):
            line = lines[index]
            after = fence_after(line, self.fence)
            if self.fence is None and after is not None:
                self._keep_block_whole(lines, index)
                after = fence_after(line, self.fence)
            if self._length(line, after) <= self.limit:
                if line.strip() or self.current:  # no blank line opens a message
                    self._append(_Entry(line, after))
                index += 1
            elif self._has_content():
                self._flush(prefer_paragraph=True)
            elif after is not None and self.fence is None and _FENCE_ONLY.fullmatch(line):
                lines[index] = after  # an opening fence too long to fit: keep a short one
            else:
                width = self.limit - self._length("", after)
                if width < 1:
                    # Only blank lines so far: drop them. What remains, at most a
                    # reopened fence, leaves room by MIN_LIMIT and _MAX_LANG.
                    self._set(self.current[:1] if self.reopened else [])
                    continue
                lines[index : index + 1] = _wrap(line, width) or [""]
        self._flush(prefer_paragraph=False)
        return self.chunks

    def _keep_block_whole(self, lines: list[str], start: int) -> None:
        """Move a code block to a fresh message if it fits there but not here."""
        fence: str | None = None
        size = -1
        for line in lines[start:]:
            fence = fence_after(line, fence)
            size += len(line) + 1
            if fence is None or size > self.limit:
                break
        fits_alone = size <= self.limit
        fits_here = self._length() + 1 + size <= self.limit
        if fits_alone and not fits_here and self._has_content():
            self._flush(prefer_paragraph=False)

    def _flush(self, *, prefer_paragraph: bool) -> None:
        keep: list[_Entry] = []
        if prefer_paragraph and self.fence is None:
            keep = self._paragraph_tail()
        text = "\n".join(e.line for e in self.current).rstrip()
        fence = self.fence
        if self._has_content():
            self.chunks.append(text + CLOSE if fence else text)
        self.reopened = fence is not None
        self._set(([_Entry(fence, fence)] if fence else []) + keep)

    def _paragraph_tail(self) -> list[_Entry]:
        """Cut at the last blank line outside code if it is in the second half."""
        used = 0
        cut: int | None = None
        for i, entry in enumerate(self.current):
            used += len(entry.line) + 1
            if not entry.line.strip() and entry.fence_after is None and used >= self.limit // 2:
                cut = i
        if cut is None:
            return []
        tail = self.current[cut + 1 :]
        self._set(self.current[:cut])
        return tail
