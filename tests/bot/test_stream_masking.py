"""A streamed reply is masked chunk by chunk exactly as the final reply is.

The bot knows the values of the secrets it was given (here SLACK_SIGNING_SECRET,
which has no key shape, and PGPASSWORD, a pass phrase with spaces); a model that
echoes them, or a password or a private key, must never have them shown, not
even for the moment before the final reply replaces the stream. Each test runs
the real streaming path (GuardBot over a real SQLite log, the real ``openai``
client against the stub server, or the whole Slack chain) and reads what the
view or the fake Slack was given, what the log's chunk rows hold, and whether
the stream was marked retracted (it must not be: what was shown is the reply).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from bot.app import GuardBot
from bot.config.schema import parse_config
from middleware.decision_log import DecisionLog
from middleware.llm.openai_model import OpenAIChatModel
from middleware.masking import forget_secrets, remember_secrets
from middleware.types import Action, ChatRequest, Decision
from tests.stubs.discord_harness import discord_rig
from tests.stubs.openai_server import Recorded, Reply, StubOpenAI
from tests.stubs.slack_harness import slack_rig
from tests.support.stream_support import STREAM_TOML, RecordingView

SIGN = "SECRETsigning0123456789"  # no key shape: masked by value only
PHRASE = "correct horse battery staple 42"  # a value with spaces: a cut may fall inside it
ENV = {"SLACK_SIGNING_SECRET": SIGN, "PGPASSWORD": PHRASE}
# Any of these in a shown state is (part of) a secret.
LEAKS = (SIGN, "SECRETsign", "Xy7#abc9Qz2", "correct horse", "horse", "MIIEowIBAAKCAQEA")


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()  # the values are process-wide; other tests must not see them


class WatchingView(RecordingView):
    """A recording view that can tell the stub model when some text was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.watches: list[tuple[str, asyncio.Event]] = []

    def when_shown(self, text: str) -> asyncio.Event:
        event = asyncio.Event()
        self.watches.append((text, event))
        return event

    async def show(self, text: str) -> None:
        await super().show(text)
        for wanted, event in self.watches:
            if wanted in text:
                event.set()


async def streamed(
    tmp_path: Path,
    stub: StubOpenAI,
    pieces: list[str],
    pauses: dict[int, str],
    context_chars: int | None = None,
) -> tuple[Decision, WatchingView, GuardBot]:
    """One message through GuardBot with a view; piece i waits until ``pauses[i]`` is shown.
    The bot is returned open (the caller reads its log, then closes it)."""
    view = WatchingView()
    events = {i: view.when_shown(text) for i, text in pauses.items()}
    stub.script = lambda _r: Reply(pieces=pieces, pauses=events)
    window = "" if context_chars is None else f"\ncontext_chars = {context_chars}"
    toml = STREAM_TOML.replace("chunk_chars = 10", f"chunk_chars = 10\nmax_hold_ms = 20{window}")
    config = parse_config(toml + f'\n[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    model = OpenAIChatModel(model="stub", api_key=None, base_url=stub.base_url, max_retries=0)
    bot = GuardBot(config, await DecisionLog.open(config.log.path), env=ENV, model=model)
    request = ChatRequest(platform="test", channel_id="c", user_id="u", text="tell me")
    try:
        return await bot.handle(request, view), view, bot
    except BaseException:
        await bot.close()
        raise
    finally:
        await model.close()


async def chunk_rows(db: Path) -> list[tuple[str, int]]:
    async with aiosqlite.connect(db) as conn:
        rows = await conn.execute_fetchall(
            "SELECT text, text_chars FROM stream_events WHERE kind = 'chunk' ORDER BY seq"
        )
    return [(str(text), int(chars)) for text, chars in rows]


async def assert_shown_is_the_reply(
    decision: Decision, view: WatchingView, bot: GuardBot, db: Path
) -> None:
    """Nothing secret shown or stored; every state a prefix of the reply; not retracted."""
    assert decision.action is Action.REPLIED
    assert view.states and view.states[-1] == decision.reply
    assert all(decision.reply.startswith(state) for state in view.states)
    assert not [leak for leak in LEAKS for state in view.states if leak in state]
    assert view.retracted == []
    record = await bot.log.stream_of(decision.id)
    assert record is not None and not record.retracted
    assert record.shown_chars == len(decision.reply)
    rows = await chunk_rows(db)
    # The rows hold what was shown, as it was shown (not a masked form of something else).
    assert "".join(text for text, _ in rows) == decision.reply
    assert all(chars == len(text) for text, chars in rows)


# None: the default window (200). The masking window does not depend on it: a small one
# (8 drops "password: " from the words before the value) or none at all masks the same.
@pytest.mark.parametrize("context_chars", [None, 8, 0])
async def test_configured_values_and_a_password_are_masked_in_every_chunk(
    tmp_path: Path, stub_llm: StubOpenAI, context_chars: int | None
) -> None:
    pieces = [
        "Hello there. The signing secret is SECRETsign",
        "ing0123456789 ok. Login with password: ",
        "Xy7#abc9Qz2 today. Your passphrase is correct horse ",
        "battery staple 42 for sure. ",
        "Done.\n",
    ]
    # The password comes only once "password: " is on screen (the name is in the shown
    # context, the value in the next chunk); the rest of the phrase only once the hold
    # has expired on "correct horse " (a cut at a word boundary, inside the value).
    pauses = {2: "Login with password: ", 3: "Your passphrase is "}
    decision, view, bot = await streamed(tmp_path, stub_llm, pieces, pauses, context_chars)
    try:
        assert decision.reply == (
            "Hello there. The signing secret is [SECRET:configured] ok. "
            "Login with password: [SECRET:credential] today. "
            "Your passphrase is [SECRET:configured] for sure. Done.\n"
        )
        # The cuts fell where the secrets were split: each name shown before its value.
        assert any(state.endswith("Login with password: ") for state in view.states)
        assert any(state.endswith("Your passphrase is ") for state in view.states)
        await assert_shown_is_the_reply(decision, view, bot, tmp_path / "g.db")
    finally:
        await bot.close()


@pytest.mark.parametrize("context_chars", [None, 8, 0])
async def test_a_name_shown_before_a_long_run_of_blanks_still_masks_its_value(
    tmp_path: Path, stub_llm: StubOpenAI, context_chars: int | None
) -> None:
    # The cut falls after the blanks; more of them than the masking window looks back.
    blanks = " " * 100
    pieces = [f"Set it up. API token:{blanks}", "Xy7#abc9Qz2 and go.\n"]
    pauses = {1: "API token:"}
    decision, view, bot = await streamed(tmp_path, stub_llm, pieces, pauses, context_chars)
    try:
        assert decision.reply == f"Set it up. API token:{blanks}[SECRET:credential] and go.\n"
        assert any(state.endswith(blanks) for state in view.states)
        await assert_shown_is_the_reply(decision, view, bot, tmp_path / "g.db")
    finally:
        await bot.close()


async def test_a_private_key_block_is_held_until_its_end_line(
    tmp_path: Path, stub_llm: StubOpenAI
) -> None:
    pieces = [
        "Here is the key:\n",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIIEowIBAAKCAQEAx1y2z3Qw8\n",
        "-----END RSA PRIVATE KEY-----\n",
        "Keep it safe.\n",
    ]
    # The END line comes only after the text before the block is on screen: its first
    # lines (each a cut) wait meanwhile, as the masking sees the block only when whole.
    decision, view, bot = await streamed(tmp_path, stub_llm, pieces, {3: "Here is the key:\n"})
    try:
        assert decision.reply == "Here is the key:\n[SECRET:private_key]\nKeep it safe.\n"
        assert not any("BEGIN" in state for state in view.states)
        await assert_shown_is_the_reply(decision, view, bot, tmp_path / "g.db")
    finally:
        await bot.close()


async def test_a_streamed_slack_reply_never_carries_a_configured_value(tmp_path: Path) -> None:
    remember_secrets(ENV.values())  # what GuardBot does with the values it is given

    def script(_r: Recorded) -> Reply:
        return Reply(
            pieces=[
                "The signing secret is ",
                SIGN[:9],
                f"{SIGN[9:]} and the pass phrase is correct ",
                "horse battery ",
                "staple 42 so there.\n",
            ]
        )

    async with slack_rig(tmp_path, script=script, slack={"stream_api": "update"}) as rig:
        await rig.send(rig.message("tell me", channel="D1", channel_type="im"))
        (delivered,) = await rig.observed.delivered(1)
        bodies = [json.dumps(call.args) for call in rig.fake.calls]
        record = await rig.bot.log.stream_of(delivered.decision.id)
    assert delivered.decision.reply == (
        "The signing secret is [SECRET:configured] and the pass phrase is "
        "[SECRET:configured] so there.\n"
    )
    assert [leak for leak in LEAKS for body in bodies if leak in body] == []
    assert any("[SECRET:configured]" in body for body in bodies)
    assert record is not None and record.shown_chars and not record.retracted


async def test_a_streamed_discord_reply_never_carries_a_configured_value(tmp_path: Path) -> None:
    remember_secrets(ENV.values())

    def script(_r: Recorded) -> Reply:
        return Reply(pieces=[f"The signing secret is {SIGN[:9]}", f"{SIGN[9:]} and ", PHRASE, "."])

    async with discord_rig(tmp_path, script=script) as rig:
        await rig.fake.post("tell me", dm=True)
        (delivered,) = await rig.delivered(1)
        bodies = [repr(call) for call in rig.fake.calls] + [repr(m) for m in rig.fake.sent]
        record = await rig.bot.log.stream_of(delivered.decision.id)
    reply = "The signing secret is [SECRET:configured] and [SECRET:configured]."
    assert delivered.decision.reply == reply
    assert [leak for leak in LEAKS for body in bodies if leak in body] == []
    assert any(reply in body for body in bodies)
    assert record is not None and record.shown_chars and not record.retracted
