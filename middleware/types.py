"""The data that flows through the pipeline and into the decision log.

These pydantic models are the contract between adapters, the pipeline, the
guards and the decision log (the README's architecture section). They are what gets
stored and serialised, so they validate; hot loops build them once per event.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Stage(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Outcome(StrEnum):
    """What a guard said. ``blocking`` on the verdict says what it *did*."""

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"
    ERROR = "error"
    SKIPPED = "skipped"


class Action(StrEnum):
    REPLIED = "replied"
    BLOCKED = "blocked"
    ERROR = "error"


def utc_now() -> datetime:
    return datetime.now(UTC)


_last_id_ms = 0
_id_seq = 0


def new_id() -> str:
    """A 26-char id that sorts by creation time (ms timestamp + counter + random).

    Lexicographic order equals time order, so `ORDER BY id` is chronological.
    """
    global _last_id_ms, _id_seq
    now_ms = time.time_ns() // 1_000_000
    if now_ms <= _last_id_ms:
        _id_seq += 1
        now_ms = _last_id_ms
    else:
        _id_seq = 0
        _last_id_ms = now_ms
    return f"{now_ms:013x}{_id_seq:05x}{os.urandom(4).hex()}"


class Turn(BaseModel):
    """One earlier message of the conversation, oldest first."""

    model_config = ConfigDict(frozen=True)

    role: str = Field(description="'user' or 'assistant'")
    content: str


class ChatRequest(BaseModel):
    """One incoming message, already turned into platform-neutral form."""

    model_config = ConfigDict(frozen=True)

    platform: str = Field(description="console | slack | discord | replay")
    channel_id: str = ""
    thread_id: str = ""
    user_id: str = ""
    user_name: str = ""
    message_id: str = ""
    text: str
    history: tuple[Turn, ...] = ()
    received_at: datetime = Field(default_factory=utc_now)


class Verdict(BaseModel):
    """One guard's judgement of one text. Recorded whether or not it blocks.

    Built once per guard call, so its cost was measured: validated construction is
    about 2 µs, and ``model_construct`` is no shortcut (it inspects the signature
    of the ``members`` default factory on every call: 40 times slower).
    """

    guard: str
    stage: Stage
    outcome: Outcome
    blocking: bool = Field(default=False, description="this verdict stops the message")
    category: str = ""
    score: float | None = None
    reason: str = ""
    latency_ms: float = 0.0
    raw: str | None = Field(default=None, description="raw model output, for audit")
    candidate_index: int | None = Field(default=None, description="output stage: which candidate")
    redacted_text: str | None = Field(default=None, description="the text with findings masked")
    confidence: float | None = Field(default=None, description="ensembles: share agreeing")
    members: list[Verdict] = Field(default_factory=list, description="ensemble member verdicts")
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


class Candidate(BaseModel):
    """One generated reply; best-of-N produces several."""

    index: int
    text: str = ""
    model: str = ""
    temperature: float | None = None
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    score: float | None = Field(default=None, description="judge / criteria score")
    chosen: bool = False
    safe: bool | None = Field(default=None, description="passed its output guards")
    error: str | None = None


class LLMCall(BaseModel):
    """Every model call a decision paid for (generation, judges, LLM guards)."""

    purpose: str = Field(description="generation | selection | guard:NAME")
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    error: str | None = None


class Selection(BaseModel):
    method: str = Field(description="single | first | judge | criteria | vote")
    reasoning: str = ""
    confidence: float | None = None
    fallback_from: list[str] = Field(default_factory=list)
    labels: dict[str, int] = Field(
        default_factory=dict, description="judge: label shown to the judge -> Candidate.index"
    )
    scores: dict[int, dict[str, float]] = Field(
        default_factory=dict, description="criteria: Candidate.index -> criterion -> 1..10"
    )
    votes: dict[str, list[int]] = Field(
        default_factory=dict, description="vote: normalised answer -> Candidate.index list"
    )


class Timings(BaseModel):
    total_ms: float = 0.0
    input_guards_ms: float = 0.0
    generation_ms: float = 0.0
    output_guards_ms: float = 0.0
    selection_ms: float = 0.0
    saved_ms: float = Field(default=0.0, description="time saved vs guards-then-generate")


class Delivery(BaseModel):
    status: str = Field(default="pending", description="pending | sent | failed | none")
    error: str | None = None


class StreamChunk(BaseModel):
    """One chunk of a streamed reply: what the output guards said and what was shown."""

    index: int
    raw_chars: int = Field(description="characters of model text in this chunk")
    chars: int = Field(description="characters released (after masking); 0 if stopped here")
    shown_chars: int = Field(description="characters visible once this chunk was shown")
    at_ms: float = Field(description="since the message arrived, when it was released")
    released: bool = True
    verdicts: list[Verdict] = Field(default_factory=list, description="this chunk's verdicts")


class StreamRecord(BaseModel):
    """How a reply was streamed: the windows used, each chunk, and how it ended."""

    chunk_chars: int
    context_chars: int
    max_hold_ms: float
    first_visible_ms: float | None = None
    last_visible_ms: float | None = None
    chunks: list[StreamChunk] = Field(default_factory=list)
    updates: int = Field(default=0, description="times the visible message changed")
    shown_chars: int = 0
    retracted: bool = Field(default=False, description="shown text was replaced afterwards")
    stopped_at_chunk: int | None = Field(default=None, description="the chunk a guard blocked")
    final_guards: list[str] = Field(default_factory=list, description='stream = "final" guards')
    note: str | None = Field(default=None, description="why the stream ended early")
    delivery_errors: list[str] = Field(default_factory=list)


class Decision(BaseModel):
    """Everything the bot decided about one message, as audited."""

    id: str = Field(default_factory=new_id)
    created_utc: datetime = Field(default_factory=utc_now)
    request: ChatRequest
    action: Action
    reply: str = ""
    blocked_by: str | None = None
    error: str | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    selection: Selection | None = None
    llm_calls: list[LLMCall] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    config_fingerprint: str = ""
    delivery: Delivery = Field(default_factory=Delivery)
    stream: StreamRecord | None = Field(
        default=None, description="streamed replies: chunks shown (kept in stream_events)"
    )

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCKED

    def verdicts_for(self, candidate_index: int) -> list[Verdict]:
        return [v for v in self.verdicts if v.candidate_index == candidate_index]
