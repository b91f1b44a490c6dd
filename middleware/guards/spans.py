"""Findings as (start, end, kind) spans: the shared mechanics of pattern scanners.

The ``pii`` and ``secrets`` guards (and the decision log's masking, through
them) find spans the same way, mask them the same way, and look again at the
plain form of a text when invisible characters hide a finding, masking what
that form found on the text as written.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable

from middleware.guards.normalize import strip_invisible

Span = tuple[int, int, str]


def non_overlapping(spans: Iterable[Span]) -> list[Span]:
    """Earliest and longest first; a span overlapping an earlier one is dropped
    (e.g. a card number's digits that also look like a phone number)."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def mask(text: str, spans: list[Span], label: Callable[[str], str]) -> str:
    """``text`` with each span replaced by ``label(kind)``."""
    out, last = [], 0
    for start, end, kind in spans:
        out.append(text[last:start])
        out.append(label(kind))
        last = end
    out.append(text[last:])
    return "".join(out)


def scan(find: Callable[[str], list[Span]], text: str, plain: str | None = None) -> list[Span]:
    """Findings in ``text``, seen through invisible characters and full-width forms.

    A zero-width space or a tag character inside a key, or full-width digits,
    hide a finding or cut it short. So the plain form (NFKC, invisible
    characters removed) is searched too, and when its findings cover more of
    the text they are used, mapped back onto the text as written: a finding
    covers every character it was made from, the invisible ones inside it too.
    Counting covered characters, not findings: a key cut in two by a zero-width
    space is one finding either way, but only the plain form's covers all of it.
    ``plain`` is ``strip_invisible(text)`` when the caller already has it.
    """
    spans = find(text)
    if plain is None:
        plain = strip_invisible(text)
    if plain == text:
        return spans
    plain_spans = find(plain)
    if not plain_spans:
        return spans
    mapped = _mapped(text, plain, plain_spans)
    return mapped if _covered(mapped) > _covered(spans) else spans


def _covered(spans: list[Span]) -> int:
    return sum(end - start for start, end, _ in spans)


def _mapped(text: str, plain: str, spans: list[Span]) -> list[Span]:
    """``spans`` of ``plain`` (``strip_invisible(text)``) as spans of ``text``."""
    # Each plain character comes from one piece of the text: a visible character with the
    # invisible characters before it and the combining marks after it (NFKC composes
    # within a piece; a piece ends where normalising two characters apart changes nothing).
    origin: list[tuple[int, int]] = []
    start, visible = 0, False
    for i, c in enumerate(text):
        if visible and not unicodedata.combining(c) and _apart(text[i - 1], c):
            origin.extend([(start, i)] * len(strip_invisible(text[start:i])))
            start, visible = i, False
        visible = visible or bool(strip_invisible(c))
    origin.extend([(start, len(text))] * len(strip_invisible(text[start:])))
    if len(origin) != len(plain):  # not seen: fail closed, the whole text is the finding
        return [(0, len(text), spans[0][2])]
    out: list[Span] = []
    for s, e, kind in spans:
        first, last = origin[s][0], origin[e - 1][1]
        if out and first < out[-1][1]:  # one character made both ends ("ﬁ"): one finding
            out[-1] = (out[-1][0], max(last, out[-1][1]), out[-1][2])
        else:
            out.append((first, last, kind))
    return out


def _apart(a: str, b: str) -> bool:
    return strip_invisible(a + b) == strip_invisible(a) + strip_invisible(b)
