"""Builders and raw-SQLite helpers shared by the decision-log tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from middleware.types import (
    Action,
    Candidate,
    ChatRequest,
    Decision,
    LLMCall,
    Outcome,
    Selection,
    Stage,
    Timings,
    Verdict,
)


def make_decision(
    text: str = "hello there",
    *,
    reply: str = "hi, how can I help?",
    action: Action = Action.REPLIED,
    platform: str = "slack",
    channel_id: str = "C1",
    thread_id: str = "T1",
    user_id: str = "U1",
    created: datetime | None = None,
    tokens: tuple[int, int] = (10, 5),
    raw: str | None = '{"category": "none", "score": 0.01}',
) -> Decision:
    blocked = action is Action.BLOCKED
    verdicts = [
        Verdict(
            guard="judge",
            stage=Stage.INPUT,
            score=0.9 if blocked else 0.01,
            latency_ms=12.5,
            outcome=Outcome.BLOCK if blocked else Outcome.ALLOW,
            blocking=blocked,
            category="violence" if blocked else "",
            reason="judged",
            raw=raw,
            model="judge-m",
            tokens_in=7,
            tokens_out=3,
        ),  # fmt: skip
        Verdict(
            guard="pii",
            stage=Stage.OUTPUT,
            outcome=Outcome.ALLOW,
            candidate_index=0,
            latency_ms=0.25,
            reason="no PII found",
        ),  # fmt: skip
    ]
    extra: dict[str, Any] = {}
    if created is not None:
        extra["created_utc"] = created
    return Decision(
        request=ChatRequest(
            platform=platform,
            channel_id=channel_id,
            thread_id=thread_id,
            user_id=user_id,
            user_name="Ann",
            message_id="m1",
            text=text,
        ),  # fmt: skip
        action=action,
        reply="Sorry, I can't help with that." if blocked else reply,
        blocked_by="judge" if blocked else None,
        verdicts=verdicts[:1] if blocked else verdicts,
        candidates=[]
        if blocked
        else [
            Candidate(
                index=0,
                text=reply,
                model="gpt-x",
                temperature=0.7,
                latency_ms=300.0,
                tokens_in=tokens[0],
                tokens_out=tokens[1],
                chosen=True,
                safe=True,
            )  # fmt: skip
        ],
        selection=None if blocked else Selection(method="single"),
        llm_calls=[
            LLMCall(
                purpose="generation",
                model="gpt-x",
                tokens_in=tokens[0],
                tokens_out=tokens[1],
                latency_ms=300.0,
            ),  # fmt: skip
        ],
        timings=Timings(
            total_ms=312.5,
            input_guards_ms=12.5,
            generation_ms=300.0,
            output_guards_ms=0.25,
            saved_ms=12.5,
        ),  # fmt: skip
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        cost_usd=0.00012,
        config_fingerprint="abc123",
        **extra,
    )


@contextmanager
def raw_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, as a person with shell access (or an attacker) has."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def drop_guards(db: sqlite3.Connection) -> None:
    """Remove the append-only triggers, as someone determined to edit the log would."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    for name in names:
        if name.endswith(("_no_update", "_no_delete")):
            db.execute(f"DROP TRIGGER {name}")
