"""Read queries: decisions by filter, one decision in full, thread history, token use.

Everything here runs on the read-only connection, so a slow audit query never
holds up the writer (WAL lets readers and the writer work at once). Child
rows are fetched for a whole page of decisions in one query per table.

Stored rows become :class:`Decision` objects again (for `show`, replay and
admins) as far as the stored form allows: texts that were not stored come
back as empty strings (``StoredDecision.text_stored`` says so) and the
request's history is not stored (it is the log itself), only how many turns
were given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from os.path import commonprefix
from typing import Any

import aiosqlite

from middleware.decision_log.records import (
    CANDIDATE_COLUMNS,
    CHAINED_COLUMNS,
    LLM_CALL_COLUMNS,
    PARTS,
    VERDICT_COLUMNS,
    named,
    utc_text,
)
from middleware.decision_log.rows import DeliveryRow, StoredDecision
from middleware.types import (
    Action,
    Candidate,
    ChatRequest,
    Decision,
    Delivery,
    LLMCall,
    Selection,
    Timings,
    Turn,
    Verdict,
)

FIRED = ("block", "flag", "redact", "error")  # a verdict that did something
ACTIONS = tuple(a.value for a in Action)

DECISION_SELECT = ", ".join(CHAINED_COLUMNS)

Row = Sequence[Any]
Named = dict[str, Any]  # a row by column name


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def stored_decision(
    row: Row,
    verdicts: list[Named],
    candidates: list[Named],
    llm_calls: list[Named],
    deliveries: list[Row],
) -> StoredDecision:
    """A stored decision rebuilt: its columns share the models' field names, so they are
    validated as they are, but for the times, the texts not stored and the parts."""
    d = dict(zip(CHAINED_COLUMNS, row, strict=True))
    request = ChatRequest.model_validate(
        {**d, "text": d["text"] or "", "received_at": parse_utc(d["received_utc"])}
    )
    selection = Selection.model_validate_json(d["selection_json"]) if d["selection_json"] else None
    delivery_rows = [DeliveryRow(parse_utc(r[1]), r[2], r[3]) for r in deliveries]
    latest = delivery_rows[-1] if delivery_rows else None
    decision = Decision.model_validate(
        {
            **d,
            "created_utc": parse_utc(d["created_utc"]),
            "request": request,
            "reply": d["reply"] or "",
            "verdicts": [_verdict(v) for v in verdicts],
            "candidates": [_candidate(c) for c in candidates],
            "selection": selection,
            "llm_calls": [LLMCall.model_validate(c) for c in llm_calls],
            "timings": Timings.model_validate(d),
            "delivery": Delivery(status=latest.status, error=latest.error)
            if latest
            else Delivery(),
        }
    )
    return StoredDecision(
        decision=decision,
        text_stored=d["text"] is not None,
        deliveries=delivery_rows,
        **{name: d[name] for name in STORED_FIELDS},
    )


# What a StoredDecision keeps of its row besides the decision.
STORED_FIELDS = [f.name for f in fields(StoredDecision) if f.name in CHAINED_COLUMNS]


def _verdict(v: dict[str, Any]) -> Verdict:
    members = json.loads(v["members_json"]) if v["members_json"] else []
    return Verdict.model_validate({**v, "raw": v["raw_output"], "members": members})


def _candidate(c: dict[str, Any]) -> Candidate:
    return Candidate.model_validate({**c, "index": c["candidate_index"], "text": c["text"] or ""})


@dataclass(frozen=True, slots=True)
class Filters:
    action: str | None = None
    blocked: bool | None = None
    guard: str | None = None
    user_id: str | None = None
    channel_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def add(clause: str, *values: Any) -> None:
            clauses.append(clause)
            params.extend(values)

        if self.action is not None:
            if self.action not in ACTIONS:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
            add("action = ?", self.action)
        if self.blocked is not None:
            add("action = 'blocked'" if self.blocked else "action != 'blocked'")
        if self.guard is not None:
            marks = ", ".join("?" * len(FIRED))
            add(
                "EXISTS (SELECT 1 FROM verdicts v WHERE v.decision_id = decisions.id "
                f"AND v.guard = ? AND v.outcome IN ({marks}))",
                self.guard,
                *FIRED,
            )
        if self.user_id is not None:
            add("user_id = ?", self.user_id)
        if self.channel_id is not None:
            add("channel_id = ?", self.channel_id)
        if self.since is not None:
            add("created_utc >= ?", utc_text(self.since))
        if self.until is not None:
            add("created_utc < ?", utc_text(self.until))
        if self.text is not None:
            add(
                "seq IN (SELECT rowid FROM decisions_fts WHERE decisions_fts MATCH ?)",
                fts_query(self.text),
            )
        return (" AND ".join(clauses) or "1"), params


# What the FTS5 ``unicode61`` tokenizer keeps as a word: letters and digits.
WORD = re.compile(r"[^\W_]+")


def fts_query(text: str) -> str:
    """The words of the search as quoted FTS5 terms, all of which must match.

    ``word*`` is a prefix search. Each word is split as the index split the
    text ("can't" is "can" and "t"): the index keeps no positions (see
    migration m002), so a query must not ask for two tokens side by side.
    """
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word) > 1
        tokens = WORD.findall(word)
        for i, token in enumerate(tokens):
            star = "*" if prefix and i == len(tokens) - 1 else ""
            terms.append(f'"{token}"{star}')
    if not terms:
        raise ValueError(f"the search {text!r} is empty: it has no letters or digits to look for")
    return " ".join(terms)


async def fetch(
    db: aiosqlite.Connection, where: str, params: Sequence[Any], *, order: str, limit: int
) -> list[StoredDecision]:
    rows = list(
        await db.execute_fetchall(
            f"SELECT {DECISION_SELECT} FROM decisions WHERE {where} ORDER BY {order} LIMIT ?",
            (*params, limit),
        )
    )
    return await with_children(db, rows)


async def with_children(db: aiosqlite.Connection, rows: list[Any]) -> list[StoredDecision]:
    if not rows:
        return []
    ids = [row[1] for row in rows]
    verdicts, cands, calls = await parts(db, ids)
    deliveries = await children(
        db, "SELECT decision_id, created_utc, status, error FROM deliveries", ids, "id"
    )
    return [
        stored_decision(row, verdicts[i], cands[i], calls[i], deliveries[i])
        for row, i in zip(rows, ids, strict=True)
    ]


async def parts(db: aiosqlite.Connection, ids: list[str]) -> list[dict[str, list[Named]]]:
    """The verdicts, candidates and model calls of each decision, by column name: one
    query per table."""
    read = (VERDICT_COLUMNS, CANDIDATE_COLUMNS, LLM_CALL_COLUMNS)  # texts too, unlike PARTS'
    found = []
    for (_, table, key, _), columns in zip(PARTS, read, strict=True):
        rows = await children(db, f"SELECT {', '.join(columns)} FROM {table}", ids, key)
        found.append({i: named(columns, rows[i]) for i in ids})
    return found


async def children(
    db: aiosqlite.Connection, select: str, ids: list[str], order: str
) -> dict[str, list[Any]]:
    found: list[Any] = []
    for start in range(0, len(ids), 500):  # stay far below SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        found += await db.execute_fetchall(
            f"{select} WHERE decision_id IN ({marks}) ORDER BY decision_id, {order}", chunk
        )
    by_id: dict[str, list[Any]] = {i: [] for i in ids}
    for row in found:  # by decision id (the first column), in stored order
        by_id[row[0]].append(row)
    return by_id


SHORT_ID_MIN = 7  # as git: never shorter than this, even in a small log
CANDIDATES_SHOWN = 10


class AmbiguousId(ValueError):
    """A prefix that matches more than one decision; ``candidates`` lists some of them."""

    def __init__(self, ref: str, candidates: list[str], more: bool) -> None:
        listed = ", ".join(candidates) + (", …" if more else "")
        super().__init__(f"{ref!r} matches more than one decision: {listed}; give more of the id")
        self.ref, self.candidates, self.more = ref, candidates, more


async def by_id(db: aiosqlite.Connection, ref: str) -> StoredDecision | None:
    """One decision by id, or by a unique id prefix (as `guardbot show` accepts).

    An ambiguous prefix raises :class:`AmbiguousId` naming the candidates.
    """
    found = await fetch(db, "id = ?", (ref,), order="seq", limit=1)
    if found or not ref or len(ref) >= 26:
        return found[0] if found else None
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await db.execute_fetchall(
        "SELECT id FROM decisions WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
        (escaped + "%", CANDIDATES_SHOWN + 1),
    )
    ids = [row[0] for row in rows]
    if len(ids) > 1:
        shown = ids[:CANDIDATES_SHOWN]
        short = await short_ids(db, shown)
        raise AmbiguousId(ref, [short[i] for i in shown], len(ids) > CANDIDATES_SHOWN)
    return await by_id(db, ids[0]) if ids else None  # a whole id: found at once


async def short_ids(db: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, str]:
    """Each id's shortest prefix that is unique in the log (at least 7 characters), as git.

    Ids sort in the ``id`` index, so only the neighbours on either side can
    share a longer prefix: two index look-ups per id, whatever the log's size.
    """
    short: dict[str, str] = {}
    for ref in dict.fromkeys(ids):
        rows = await db.execute_fetchall(
            "SELECT (SELECT max(id) FROM decisions WHERE id < ?), "
            "(SELECT min(id) FROM decisions WHERE id > ?)",
            (ref, ref),
        )
        before, after = next(iter(rows))
        shared = max(len(commonprefix([ref, other or ""])) for other in (before, after))
        short[ref] = ref[: max(SHORT_ID_MIN, shared + 1)]
    return short


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A thread's last replied exchanges: the SQL, and how its rows become turns.

    The same query serves the threaded read (:func:`history`) and the store's
    read on the event loop (a small indexed read, cheaper than a thread's hop).
    """

    platform: str
    channel_id: str
    thread_id: str
    max_turns: int
    max_chars: int
    before: str | None = None

    @property
    def empty(self) -> bool:
        return self.max_turns <= 0 or self.max_chars <= 0

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        where = (
            "platform = ? AND channel_id = ? AND thread_id = ? AND action = 'replied' "
            "AND text IS NOT NULL AND reply IS NOT NULL"
        )
        params: list[Any] = [self.platform, self.channel_id, self.thread_id]
        if self.before is not None:  # as it was when that decision was made (for replay)
            where += " AND seq < coalesce((SELECT seq FROM decisions WHERE id = ?), -1)"
            params.append(self.before)
        return (
            f"SELECT text, reply FROM decisions WHERE {where} ORDER BY seq DESC LIMIT ?",
            (*params, math.ceil(self.max_turns / 2)),
        )

    def turns(self, rows: Iterable[Sequence[Any]]) -> list[Turn]:
        """Oldest first, within both bounds, never opening on a reply."""
        turns = [
            t
            for text, reply in reversed(list(rows))
            for t in (Turn(role="user", content=text), Turn(role="assistant", content=reply))
        ][-self.max_turns :]
        total = sum(len(t.content) for t in turns)
        while turns and (total > self.max_chars or turns[0].role == "assistant"):
            total -= len(turns.pop(0).content)  # oldest first
        return turns


async def history(db: aiosqlite.Connection, query: HistoryQuery) -> list[Turn]:
    """The thread's last replied exchanges, oldest first, within both bounds."""
    if query.empty:
        return []
    return query.turns(await db.execute_fetchall(*query.sql()))


async def tokens_used_since(
    db: aiosqlite.Connection,
    since: datetime,
    *,
    user_id: str | None = None,
    channel_id: str | None = None,
    platform: str | None = None,
) -> int:
    where, params = Filters(since=since, user_id=user_id, channel_id=channel_id).where()
    if platform is not None:  # ids are only unique within a platform
        where += " AND platform = ?"
        params.append(platform)
    rows = await db.execute_fetchall(
        f"SELECT coalesce(sum(tokens_in + tokens_out), 0) FROM decisions WHERE {where}", params
    )
    return int(next(iter(rows))[0])
