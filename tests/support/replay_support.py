"""A real decision log built by the real bot under one policy, for the replay tests.

Policy A is what was deployed when the messages arrived; policy B changes it
in the three ways the issue names (a blocklist word added, a guard disabled,
a threshold lowered). ``EXPECTED`` is what replaying A's log under B must
report, decision by decision, and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

from bot.app import GuardBot
from bot.config.schema import Config, parse_config
from middleware.decision_log import DecisionLog
from middleware.types import ChatRequest, Decision, utc_now

POLICY_A = """
[llm]
provider = "echo"

[[guards]]
name = "words"
kind = "blocklist"
words = ["forbidden"]

[[guards]]
name = "legacy"
kind = "blocklist"
words = ["banana"]

[[guards]]
name = "swearing"
kind = "profanity"
threshold = 0.9

[[guards]]
name = "pii"
kind = "pii"
stage = "output"

[log]
path = "{db}"
"""

# B: "apple" added to `words`, `legacy` disabled, `swearing` threshold 0.9 -> 0.6.
POLICY_B = (
    POLICY_A.replace('words = ["forbidden"]', 'words = ["forbidden", "apple"]')
    .replace('words = ["banana"]', 'words = ["banana"]\nenabled = false')
    .replace("threshold = 0.9", "threshold = 0.6")
)

# key, channel, user, text. Keys name the messages in EXPECTED.
MESSAGES = [
    ("hello", "c1", "alice", "hello there"),
    ("apple", "c1", "bob", "I like apple pie"),
    ("banana", "c2", "alice", "banana split please"),
    ("both", "c2", "bob", "banana and apple"),
    # -- MIDPOINT: build_log notes the time here, for --since/--until tests
    ("awful", "c1", "alice", "that movie was bloody awful"),
    ("silly", "c1", "bob", "what a silly idea"),
    ("email", "c2", "alice", "write to jane.doe@example.com"),
    ("forbidden", "c2", "bob", "this is forbidden"),
]
MIDPOINT = 4

ORIGINAL_ACTIONS = {
    "hello": "replied",
    "apple": "replied",
    "banana": "blocked",
    "both": "blocked",
    "awful": "replied",
    "silly": "replied",
    "email": "blocked",  # the echoed reply holds the address: the output pii guard blocks
    "forbidden": "blocked",
}

# key -> (kind, new action, {(guard, stage): (old outcome, new outcome)})
EXPECTED: dict[str, tuple[str, str, dict[tuple[str, str], tuple[str, str]]]] = {
    "apple": ("newly_blocked", "blocked", {("words", "input"): ("allow", "block")}),
    "awful": ("newly_blocked", "blocked", {("swearing", "input"): ("allow", "block")}),
    "banana": ("newly_allowed", "replied", {("legacy", "input"): ("block", "not run")}),
    "both": (
        "verdicts_changed",
        "blocked",
        {("legacy", "input"): ("block", "not run"), ("words", "input"): ("allow", "block")},
    ),
}
UNCHANGED = {"hello", "silly", "email", "forbidden"}


@dataclass
class BuiltLog:
    db: Path
    policy_a: Path
    policy_b: Path
    ids: dict[str, str]
    decisions: dict[str, Decision]
    midpoint: datetime
    extra_ids: dict[str, str] = field(default_factory=dict)

    def key_of(self, decision_id: str) -> str:
        return {v: k for k, v in {**self.ids, **self.extra_ids}.items()}[decision_id]


def config(text: str, db: Path) -> Config:
    return parse_config(text.replace("{db}", str(db)), "test")


async def handle_all(
    bot: GuardBot, messages: list[tuple[str, str, str, str]]
) -> dict[str, Decision]:
    out = {}
    for i, (key, channel, user, text) in enumerate(messages):
        request = ChatRequest(
            platform="console",
            channel_id=channel,
            thread_id=f"t-{key}-{i}",
            user_id=user,
            text=text,
        )
        out[key] = await bot.handle(request)
    return out


async def build_log(folder: Path) -> BuiltLog:
    db = folder / "guardbot.db"
    a = folder / "a.toml"
    b = folder / "b.toml"
    a.write_text(POLICY_A.replace("{db}", str(db)), encoding="utf-8")
    b.write_text(POLICY_B.replace("{db}", str(db)), encoding="utf-8")
    log = await DecisionLog.open(db)
    bot = GuardBot(config(POLICY_A, db), log, env={})
    try:
        first = await handle_all(bot, MESSAGES[:MIDPOINT])
        midpoint = utc_now()
        second = await handle_all(bot, MESSAGES[MIDPOINT:])
    finally:
        await bot.close()
    decisions = {**first, **second}
    for key, decision in decisions.items():
        assert decision.action.value == ORIGINAL_ACTIONS[key], (key, decision)
    return BuiltLog(
        db=db,
        policy_a=a,
        policy_b=b,
        ids={k: d.id for k, d in decisions.items()},
        decisions=decisions,
        midpoint=midpoint,
    )


async def add_unstored(built: BuiltLog, text: str = "hello again, unstored") -> str:
    """One more decision written with ``store_text = false``: not replayable."""
    log = await DecisionLog.open(built.db, store_text=False)
    bot = GuardBot(config(POLICY_A, built.db), log, env={})
    try:
        decision = (await handle_all(bot, [("unstored", "c1", "carol", text)]))["unstored"]
    finally:
        await bot.close()
    built.extra_ids["unstored"] = decision.id
    return decision.id


@dataclass
class Page:
    summary: dict[str, int] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)  # decision id -> kind
    flips: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    chart: dict[str, int] = field(default_factory=dict)  # guard -> flips
    messages: dict[str, str] = field(default_factory=dict)  # decision id -> shown text
    tags: set[str] = field(default_factory=set)
    fetching_attrs: list[tuple[str, str]] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._row: str | None = None
        self._depth = 0
        self._in_msg = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.add(tag)
        self.page.fetching_attrs += [(k, v) for k, v in a.items() if k in ("src", "href")]
        if a.get("id", "").startswith("summary-") and "data-count" in a:
            self.page.summary[a["data-key"]] = int(a["data-count"])
        if tag == "tr" and "change" in a.get("class", "").split():
            self._row = a["data-id"]
            for one in a.get("data-ids", "").split() or [self._row]:  # a group of identical rows
                self.page.changes[one] = a["data-kind"]
            self.page.flips[self._row] = {}
        if tag == "tr" and self._row is not None:
            self._depth += 1  # a streamed reply's chunk table nests rows inside the change row
        if tag == "li" and self._row is not None and "flip" in a.get("class", ""):
            self.page.flips[self._row][a["data-guard"]] = (a["data-old"], a["data-new"])
        if tag == "td" and self._row is not None and a.get("class") == "msg":
            self._in_msg = True
            self.page.messages[self._row] = ""
        if tag == "g" and "bar" in a.get("class", ""):
            self.page.chart[a["data-guard"]] = int(a["data-total"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self._depth -= 1
            if not self._depth:
                self._row = None
        if tag == "td":
            self._in_msg = False

    def handle_data(self, data: str) -> None:
        if self._in_msg and self._row is not None:
            self.page.messages[self._row] += data


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
