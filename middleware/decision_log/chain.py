"""The hash chain that makes edits, insertions and deletions of audited records visible.

One chain runs through every record that decided or showed a reply, or
changed the policy in force, in commit order (``seq``, one counter shared by
all of them): decisions (with their verdicts, candidates and model calls),
deliveries, admin actions (allowed or refused; a setting change is one) and
prune checkpoints, and each chunk of a streamed reply (and its end) as it is
shown. Each record stores ``prev_sha256`` and ``sha256``:

- format v1 (decisions written before the v2 migration):
  ``sha256 = H(prev_sha256 + content)``;
- format v2: ``sha256 = H(json([2, kind, seq, prev_sha256, content]))``, so a
  record's kind and place are covered as well as its content.

``content`` is the SHA-256 of the canonical JSON of what was stored (see
:mod:`.records`); a decision's covers the hashes of its verdicts, candidates
and model calls, so a changed one is named as that row (a :class:`Flaw`).
The log records from which ``seq`` each version applies and the head (last
``seq`` and hash), so removing the newest records shows too. :func:`walk`
recomputes the chain in order and names the first record that does not fit.
A prune removes a prefix and appends a checkpoint record holding the hash of
the last record it removed (where verification of the rest starts) and the
settings in force at that point.

A chain without a secret cannot catch someone who rewrites the *end* of the
log, head included, and recomputes every later hash; `guardbot verify`
prints the head hash so it can be anchored elsewhere and compared later.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

GENESIS = "0" * 64
CURRENT_VERSION = 2

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


canonical_json = _canonical_json()  # the one serialisation every hash of the log covers


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value`` (compact separators, ASCII)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def content_sha256(
    decision: Row, verdicts: Sequence[Row], candidates: Sequence[Row], llm_calls: Sequence[Row]
) -> str:
    """SHA-256 of the canonical JSON ``[decision, verdicts, candidates, llm_calls]``."""
    return canonical_sha256([decision, verdicts, candidates, llm_calls])


def link(prev_sha256: str, content: str) -> str:
    """A v1 link (decisions written before the v2 migration)."""
    return hashlib.sha256((prev_sha256 + content).encode("ascii")).hexdigest()


def link_v2(kind: str, seq: int, prev_sha256: str, content: str) -> str:
    """``H(json([2, kind, seq, prev, content]))``; kinds and hashes are plain ASCII."""
    blob = f'[2,"{kind}",{int(seq)},"{prev_sha256}","{content}"]'
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def version_at(versions: Sequence[tuple[int, int]], seq: int) -> int:
    """The format of the record at ``seq``, from (version, from_seq) pairs."""
    found = 1
    for version, from_seq in versions:
        if from_seq <= seq and version > found:
            found = version
    return found


@dataclass(slots=True)
class Chainer:
    """Appends records to the chain inside one write transaction (any backend)."""

    seq: int  # the head: the last seq used
    sha256: str

    def append(self, kind: str, content: str) -> tuple[int, str, str]:
        """(seq, prev_sha256, sha256) of the next record, always in the current format."""
        self.seq += 1
        prev = self.sha256
        self.sha256 = link_v2(kind, self.seq, prev, content)
        return self.seq, prev, self.sha256


@dataclass(frozen=True, slots=True)
class Flaw:
    """A part of a record (a decision's verdict, candidate or model call) that does not
    match the hash the record committed to, although the record's own link holds."""

    problem: str  # "changed" | "inserted" | "deleted"
    kind: str  # "verdict" | "candidate" | "llm call"
    id: str
    message: str


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One chained record as read back for verification."""

    kind: str
    seq: int
    id: str
    content_sha256: str  # recomputed from the stored rows
    prev_sha256: str
    sha256: str
    version: int = CURRENT_VERSION
    flaw: Flaw | None = None

    @property
    def name(self) -> str:
        return f"{self.kind} {self.id} (#{self.seq})"


Ref = tuple[str, int, str]  # (kind, seq, id) of a record found by a lookup


@dataclass(frozen=True, slots=True)
class UndecidedStream:
    """Chunks of a streamed reply that were shown, with no decision recorded under their id
    (a crash or a failed decision write mid-stream): on the chain, but in no decision."""

    decision_id: str
    chunks: int
    shown_chars: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int  # chained records verified, every kind
    head_sha256: str  # of the last record verified
    head_id: str | None
    start_sha256: str  # GENESIS, or the last prune checkpoint's hash
    problem: str | None = None  # "changed" | "inserted" | "deleted" | "reordered"
    bad_id: str | None = None
    bad_seq: int | None = None
    message: str = "ok"
    bad_kind: str | None = None  # a record's kind, or "verdict", "llm call", "setting"...
    counts: dict[str, int] = field(default_factory=dict)  # records verified per kind
    head_seq: int = 0  # the last record verified: its seq and kind (None: none verified)
    head_kind: str | None = None
    undecided_streams: list[UndecidedStream] = field(default_factory=list)  # warnings only
    warnings: list[str] = field(default_factory=list)  # a check that could not run, and why


class Lookup(Protocol):
    """Finds records when a link breaks (only then; the walk itself keeps no index)."""

    async def with_sha256(self, sha256: str, before_seq: int) -> Ref | None:
        """The first record before ``before_seq`` whose own hash is ``sha256``."""

    async def with_prev(self, sha256: str, after_seq: int) -> Ref | None:
        """The first record after ``after_seq`` that chains to ``sha256``."""

    async def after(self, seq: int) -> Ref | None:
        """The first record after ``seq``."""


async def walk(
    links: AsyncIterator[StoredLink],
    start_sha256: str,
    start_seq: int,
    lookup: Lookup,
    head: tuple[int, str] | None = None,
) -> ChainReport:
    """Check every link in order; stop at the first record changed, inserted, deleted or moved.

    ``start_seq`` is 0, or the last record a prune removed: records are numbered
    without gaps from there up to ``head`` (the last seq and hash the log
    recorded), so a gap or a missing tail is a deletion.
    """
    expected_prev = start_sha256
    counts: dict[str, int] = {}  # records verified, per kind
    last: StoredLink | None = None

    def fail(
        problem: str, bad: StoredLink | Ref, message: str, last_bad: bool = False
    ) -> ChainReport:
        """``bad`` is the record named; ``last_bad``: it is ``last``, found rewritten."""
        kind, seq, rid = (bad.kind, bad.seq, bad.id) if isinstance(bad, StoredLink) else bad
        good = None if last_bad else last  # the last record that verified
        return ChainReport(
            ok=False, checked=max(0, sum(counts.values()) - last_bad),
            head_sha256=good.sha256 if good else start_sha256, head_id=good.id if good else None,
            start_sha256=start_sha256, problem=problem, bad_id=rid, bad_seq=seq,
            message=message, bad_kind=kind, counts=counts,
            head_seq=good.seq if good else start_seq, head_kind=good.kind if good else None,
        )  # fmt: skip

    async for row in links:
        expected_seq = (last.seq if last else start_seq) + 1
        if row.seq < expected_seq:
            return fail("inserted", row, f"{row.name} was inserted: #{row.seq} is already taken")
        if row.prev_sha256 != expected_prev:
            return fail(*await _broken_link(row, last, start_sha256, lookup))
        if head is not None and row.seq > head[0]:
            return fail("inserted", row, f"{row.name} was inserted: the log's head is #{head[0]}")
        if row.seq != expected_seq:
            return fail("deleted", row, f"records #{expected_seq}..#{row.seq - 1} were deleted "
                        f"before {row.name}")  # fmt: skip
        if row.version == 1:
            sha256 = link(row.prev_sha256, row.content_sha256)
        else:
            sha256 = link_v2(row.kind, row.seq, row.prev_sha256, row.content_sha256)
        if sha256 != row.sha256 and _other_format(row) == row.sha256:
            return fail("changed", ("format table", row.seq, "chain_versions"), "the table of "
                        f"chain formats (chain_versions) was edited: {row.name} verifies in the "
                        f"other format than the v{row.version} it assigns")  # fmt: skip
        if sha256 != row.sha256:
            what = "its stored values"
            if row.kind == "decision":
                what = "its stored row, verdicts, candidates or model calls"
            return fail("changed", row, f"{row.name} was changed after it was written: {what} "
                        "no longer match its hash")  # fmt: skip
        if row.flaw is not None:
            return fail(row.flaw.problem, (row.flaw.kind, row.seq, row.flaw.id), row.flaw.message)
        expected_prev = row.sha256
        last = row
        counts[row.kind] = counts.get(row.kind, 0) + 1
    end_seq = last.seq if last else start_seq
    if head is not None and head[0] > end_seq:
        where = f"after {last.name}" if last else "at the end of the log"
        return fail("deleted", ("record", head[0], f"#{head[0]}"), f"the newest record(s) "
                    f"#{end_seq + 1}..#{head[0]} were deleted {where} (the log's head is "
                    f"#{head[0]})")  # fmt: skip
    if head is not None and head[1] != expected_prev and last is not None:
        return fail("changed", last, f"{last.name} was rewritten: its hash is not the one the "
                    "log's head recorded", last_bad=True)  # fmt: skip
    return ChainReport(
        ok=True,
        checked=sum(counts.values()),
        head_sha256=expected_prev,
        head_id=last.id if last else None,
        start_sha256=start_sha256,
        counts=counts,
        head_seq=last.seq if last else start_seq,
        head_kind=last.kind if last else None,
    )


def _other_format(row: StoredLink) -> str:
    """``row``'s hash in the format it is not assigned (v1 <-> v2)."""
    if row.version == 1:
        return link_v2(row.kind, row.seq, row.prev_sha256, row.content_sha256)
    return link(row.prev_sha256, row.content_sha256)


async def _broken_link(
    row: StoredLink, last: StoredLink | None, start: str, lookup: Lookup
) -> tuple[str, StoredLink | Ref, str, bool]:
    """``row`` does not chain to ``last`` (the last good record): what happened between,
    as the walk's failure (problem, record named, message, whether it is ``last``)."""
    expected = last.sha256 if last else start
    last_seq = last.seq if last else 0
    # A later record chains to the last good one: ``row`` is out of its place.
    follower = await lookup.with_prev(expected, row.seq)
    if follower is not None:
        kind, seq, rid = follower
        return ("reordered", row, f"{row.name} is out of place: {kind} {rid} (#{seq}) is the "
                f"record that follows #{last_seq} in the chain (sequence numbers were changed "
                "or a record was inserted)", False)  # fmt: skip
    # Chains to an earlier record (or the start): everything after that one was inserted.
    anchor: Ref | None = ("start", 0, "")
    if row.prev_sha256 != start:
        anchor = await lookup.with_sha256(row.prev_sha256, row.seq)
    if anchor is not None and last is not None and anchor[1] < last_seq:
        first = await lookup.after(anchor[1])
        bad = first if first else (last.kind, last.seq, last.id)
        return ("inserted", bad, f"{bad[0]} {bad[2]} (#{bad[1]}) was inserted: it is not "
                f"part of the chain ({row.name} after it chains to an earlier record)",
                False)  # fmt: skip
    if last is not None and row.seq == last.seq + 1:
        # Adjacent records and no earlier match: the previous one was rewritten, hash and all.
        return ("changed", last, f"{last.name} was changed after it was written: the next "
                f"record ({row.name}) chains to its original hash", True)  # fmt: skip
    where = f"after {last.name}" if last else "at the start of the log"
    gone = f"#{last_seq + 1}" if row.seq == last_seq + 2 else f"#{last_seq + 1}..#{row.seq - 1}"
    what = f"record {gone}" if row.seq > last_seq + 1 else "record(s)"
    return ("deleted", row, f"{what} deleted {where}: {row.name} does not chain to the record "
            "before it", False)  # fmt: skip


def failure(problem: str, kind: str, rid: str, seq: int | None, message: str) -> ChainReport:
    """A report for a record outside the walk (unchained rows, settings)."""
    return ChainReport(
        ok=False, checked=0, head_sha256=GENESIS, head_id=None, start_sha256=GENESIS,
        problem=problem, bad_id=rid, bad_seq=seq, message=message, bad_kind=kind,
    )  # fmt: skip


def not_checked(why: str) -> ChainReport:
    """A check's answer when it could not run: a warning on the report, not a failure."""
    return ChainReport(
        ok=True, checked=0, head_sha256=GENESIS, head_id=None, start_sha256=GENESIS,
        warnings=[why],
    )  # fmt: skip
