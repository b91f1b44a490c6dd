"""Findings as (start, end, kind) spans: the shared mechanics of pattern scanners.

The ``pii`` and ``secrets`` guards (and the decision log's masking, through
them) find spans the same way, mask them the same way, and look again at the
plain form of a text when invisible characters hide a finding.
"""

from __future__ import annotations

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


def scan(find: Callable[[str], list[Span]], text: str) -> tuple[str, list[Span]]:
    """Findings, on the text as given or, if that hides them, on its plain form.

    Full-width characters or zero-width spaces between digits would otherwise
    hide a finding; when they do, the plain form (NFKC, invisible characters
    removed) is the text the findings refer to and the one that gets masked.
    """
    spans = find(text)
    plain = strip_invisible(text)
    if plain != text:
        plain_spans = find(plain)
        if len(plain_spans) > len(spans):
            return plain, plain_spans
    return text, spans
