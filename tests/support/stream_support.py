"""What the streaming tests share: the output guards a stream is screened with, a view
that records every state a user could have seen, and a real log of streamed replies.

The middleware tests, the bot's streaming tests and the audit/replay tests of
streamed replies all screen with the same two guards (a PII redaction that
masks an address split across chunks, and a blocklist word that stops a
stream mid-way), so a change to either reads the same in all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from bot.app import GuardBot
from bot.config.schema import Config, parse_config
from middleware.decision_log import DecisionLog
from middleware.llm.openai_model import OpenAIChatModel
from middleware.types import ChatRequest, Decision, StreamRecord
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI

# Chunks of 10+ characters, no history; `pii` masks, `words` stops a stream at "forbidden".
STREAM_TOML = """
[pipeline]
chunk_chars = 10
history_turns = 0

[[guards]]
name = "pii"
kind = "pii"
stage = "output"
action = "redact"

[[guards]]
name = "words"
kind = "blocklist"
stage = "output"
words = ["forbidden"]
"""


class RecordingView:
    """Every state a user could have seen, in order, and when the first one appeared."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.retracted: list[str] = []
        self.first_shown = asyncio.Event()

    async def show(self, text: str) -> None:
        self.states.append(text)
        self.first_shown.set()

    async def retract(self, text: str) -> None:
        self.retracted.append(text)
        self.states.append(text)


# -- a log of streamed replies (the audit and replay tests read it back) -----------------

AUDIT_TOML = (
    STREAM_TOML
    + """
[[guards]]
name = "late"
kind = "blocklist"
stage = "output"
words = ["zebra"]
stream = "final"

[admin]
users = ["console:*", "slack:UA"]

[slack]
stream_api = "off"
"""
)
# What the stub model answers to each message (pieces of one streamed reply).
PIECES = {
    "mail": ["Hello world. ", "Mail me at a.b@", "example.org please. ", "Bye now.\n"],
    "block": ["A fine start here. ", "Then a forbidden word. ", "And more.\n"],
    "final": ["Plain first part. ", "A zebra at the end.\n"],
    "spam": ["Buy cheap pills. ", "Banana deals today.\n"],
}


@dataclass
class Streamed:
    db: Path
    decisions: dict[str, Decision] = field(default_factory=dict)
    spam: list[Decision] = field(default_factory=list)
    streams: dict[str, StreamRecord] = field(default_factory=dict)  # decision id -> record


def audit_config(db: Path, toml: str = AUDIT_TOML) -> Config:
    return parse_config(toml + f'\n[log]\npath = "{db}"\n', "test")


def console_request(text: str) -> ChatRequest:
    return ChatRequest(platform="console", channel_id="console", user_id="u1", text=text)


async def stream_log(folder: Path, stub: StubOpenAI) -> Streamed:
    """Four kinds of streamed reply (completed with a mask, stopped at chunk 1 by `words`,
    retracted by the `final` guard), and the same spam message three times."""
    out = Streamed(folder / "g.db")
    view = RecordingView()

    def script(rec: Recorded) -> Reply:
        key = rec.body["messages"][-1]["content"].split()[0]
        # The second piece waits until the first chunk is on screen: text shown before a
        # block (mid-stream, or by the `final` guard) is what gets retracted.
        pauses = {1: view.first_shown} if key in ("block", "final") else {}
        return Reply(pieces=PIECES[key], pauses=pauses)

    stub.script = script
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub.base_url)
    bot = GuardBot(audit_config(out.db), await DecisionLog.open(out.db), env={}, model=model)
    try:
        for key in ("mail", "block", "final"):
            view = RecordingView()
            out.decisions[key] = await bot.handle(console_request(f"{key} please"), view)
        for _ in range(3):
            out.spam.append(await bot.handle(console_request("spam please"), RecordingView()))
        for d in [*out.decisions.values(), *out.spam]:
            record = await bot.log.stream_of(d.id)
            assert record is not None, d
            out.streams[d.id] = record
    finally:
        await bot.close()
        await model.close()
    return out
