"""The hash chain that makes edits, insertions and deletions of decisions visible.

Each decision row stores ``sha256 = H(prev_sha256 + H(content))`` where the
content is the canonical JSON of exactly what was stored for it: the
decision row and its verdict, candidate and LLM-call rows. :func:`walk`
recomputes the chain in commit order (``seq``) and names the first row that
does not fit. A prune leaves a checkpoint holding the hash of the last row it
removed, so the remaining chain still starts from a known value.

A chain without a secret cannot catch someone who rewrites the *end* of the
log and recomputes every later hash; `guardbot verify` prints the head hash
so it can be anchored elsewhere (a ticket, another system) and compared later.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

GENESIS = "0" * 64

Row = Sequence[Any]


def _canonical_json() -> Callable[[Any], str]:
    """``JSONEncoder(separators=(",", ":")).encode``, with its C encoder built once.

    ``encode()`` builds the C encoder again on every call, which is an eighth
    of the hashing time; the output is the same byte for byte.
    """
    plain = json.JSONEncoder(separators=(",", ":"), check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this Python
        return plain.encode
    chunks = make(None, plain.default, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)  # fmt: skip
    return lambda value: "".join(chunks(value, 0))


_CANONICAL = _canonical_json()


def content_sha256(
    decision: Row, verdicts: Sequence[Row], candidates: Sequence[Row], llm_calls: Sequence[Row]
) -> str:
    """SHA-256 of the canonical JSON ``[decision, verdicts, candidates, llm_calls]``."""
    blob = _CANONICAL([decision, verdicts, candidates, llm_calls])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def link(prev_sha256: str, content: str) -> str:
    return hashlib.sha256((prev_sha256 + content).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One decision as read back for verification."""

    seq: int
    id: str
    content_sha256: str  # recomputed from the stored rows
    prev_sha256: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int
    head_sha256: str
    head_id: str | None
    start_sha256: str  # GENESIS, or the last prune checkpoint's hash
    problem: str | None = None  # "changed" | "inserted" | "deleted"
    bad_id: str | None = None
    bad_seq: int | None = None
    message: str = "ok"


class Lookup(Protocol):
    """Finds rows by hash when a link breaks (only then; the walk itself keeps no index)."""

    async def seq_with_sha256(self, sha256: str, before_seq: int) -> int | None: ...

    async def row_after(self, seq: int) -> tuple[int, str] | None: ...


async def walk(
    links: AsyncIterator[StoredLink], start_sha256: str, start_seq: int, lookup: Lookup
) -> ChainReport:
    """Check every link in order; stop at the first row that was changed, inserted or deleted.

    ``start_seq`` is 0, or the last row a prune removed: rows are numbered without
    gaps from there, so a gap whose hashes still link means the log was cut and
    then written on (the tail was removed while the bot was stopped).
    """
    expected_prev = start_sha256
    checked = 0
    last: StoredLink | None = None
    async for row in links:
        if row.prev_sha256 != expected_prev:
            return await _broken_link(row, last, checked, start_sha256, lookup)
        expected_seq = (last.seq if last else start_seq) + 1
        if row.seq != expected_seq:
            return _report(
                checked, start_sha256, last, "deleted", bad=row,
                message=f"decisions #{expected_seq}..#{row.seq - 1} were deleted before "
                f"{row.id} (#{row.seq}); the log was cut there and written on",
            )  # fmt: skip
        if link(row.prev_sha256, row.content_sha256) != row.sha256:
            return _report(
                checked, start_sha256, last, "changed", bad=row,
                message=f"decision {row.id} (#{row.seq}) was changed after it was written: "
                "its stored content no longer matches its hash",
            )  # fmt: skip
        expected_prev = row.sha256
        last = row
        checked += 1
    return ChainReport(
        ok=True,
        checked=checked,
        head_sha256=expected_prev,
        head_id=last.id if last else None,
        start_sha256=start_sha256,
    )


async def _broken_link(
    row: StoredLink, last: StoredLink | None, checked: int, start: str, lookup: Lookup
) -> ChainReport:
    """``row`` does not chain to ``last`` (the last good row): say what happened in between."""
    last_seq = last.seq if last else 0
    # Chains to an earlier row (or the start): everything after that row was inserted.
    anchor = (
        0 if row.prev_sha256 == start else await lookup.seq_with_sha256(row.prev_sha256, row.seq)
    )
    if anchor is not None and last is not None and anchor < last_seq:
        first = await lookup.row_after(anchor)
        seq, rid = first if first else (last.seq, last.id)
        return _report(
            checked, start, last, "inserted", bad=(seq, rid),
            message=f"decision {rid} (#{seq}) was inserted: it is not part of the chain "
            f"(decision {row.id} after it chains to an earlier row)",
        )  # fmt: skip
    if last is not None and row.seq == last.seq + 1:
        # Adjacent rows and no earlier match: the previous row was rewritten, hash and all.
        return _report(
            checked - 1, start, None, "changed", bad=last,
            message=f"decision {last.id} (#{last.seq}) was changed after it was written: "
            f"the next decision ({row.id}) chains to its original hash",
        )  # fmt: skip
    where = f"after decision {last.id} (#{last.seq})" if last else "at the start of the log"
    return _report(
        checked, start, last, "deleted", bad=row,
        message=f"decision(s) were deleted {where}: decision {row.id} (#{row.seq}) "
        "does not chain to the row before it",
    )  # fmt: skip


def _report(
    checked: int,
    start: str,
    last: StoredLink | None,
    problem: str,
    *,
    bad: StoredLink | tuple[int, str],
    message: str,
) -> ChainReport:
    """A failed walk; ``last`` is the last row that verified, ``bad`` the one named."""
    bad_seq, bad_id = (bad.seq, bad.id) if isinstance(bad, StoredLink) else bad
    return ChainReport(
        ok=False,
        checked=max(0, checked),
        head_sha256=last.sha256 if last else start,
        head_id=last.id if last else None,
        start_sha256=start,
        problem=problem,
        bad_id=bad_id,
        bad_seq=bad_seq,
        message=message,
    )
