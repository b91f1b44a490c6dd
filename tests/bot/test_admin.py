"""Admin commands through the platform-neutral entry (`GuardBot.admin`) and the console.

The real GuardBot on a real SQLite log in tmp_path, with the offline echo
model. A setting is proven to work by the next message's decision (its
reply, its verdicts, its config fingerprint), not by reading it back.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleChat
from bot.app import GuardBot
from bot.config.schema import Config
from middleware.types import Action, ChatRequest

LONG = "this message is certainly longer than thirty characters"


def make_config(tmp_path: Path, **admin: Any) -> Config:
    return Config.model_validate(
        {
            "llm": {"provider": "echo"},
            "log": {"path": str(tmp_path / "guardbot.db")},
            "guards": [{"name": "length", "kind": "max_length", "stage": "input", "max_chars": 30}],
            "admin": {"users": ["console:*", "slack:UADMIN", "discord:1001"], **admin},
        }
    )


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[GuardBot]:
    app = await GuardBot.open(make_config(tmp_path), env={})
    try:
        yield app
    finally:
        await app.close()


def req(text: str = "", *, platform: str = "slack", user: str = "UADMIN", channel: str = "C1"):
    return ChatRequest(
        platform=platform, channel_id=channel, user_id=user, user_name=user, text=text
    )


async def admin(bot: GuardBot, command: str, **kw: Any) -> str:
    platform_admin = kw.pop("platform_admin", False)
    return await bot.admin(req(**kw), command, platform_admin=platform_admin)


async def say(bot: GuardBot, text: str, **kw: Any) -> Any:
    return await bot.handle(req(text, **kw))


async def test_non_admins_are_refused_and_the_attempt_is_logged(bot: GuardBot) -> None:
    answer = await admin(bot, "set refusal Pwned", user="UOTHER")
    assert "only for this bot's admins" in answer and "slack:UOTHER" in answer
    assert "logged" in answer
    assert await bot.log.settings() == []
    (row,) = await bot.log.admin_actions()
    assert (row.actor, row.allowed, row.command, row.error) == (
        "slack:UOTHER", False, "set refusal Pwned", "not an admin",
    )  # fmt: skip
    # read-only commands are refused too (deny by default), and an empty user id never passes
    assert "only for this bot's admins" in await admin(bot, "status", user="UOTHER")
    assert "only for this bot's admins" in await admin(bot, "help", user="")
    # being an admin on one platform means nothing on another
    assert "only for" in await admin(bot, "status", platform="discord", user="UADMIN")
    assert "only for" in await admin(bot, "status", user="UOTHER", platform_admin=True)
    assert len(await bot.log.admin_actions()) == 5


async def test_discord_manage_server_counts_only_when_configured(tmp_path: Path) -> None:
    for enabled in (True, False):
        app = await GuardBot.open(make_config(tmp_path, discord_manage_guild=enabled), env={})
        try:
            answer = await admin(app, "status", platform="discord", user="77", platform_admin=True)
            assert ("Status for" in answer) is enabled
            listed = await admin(app, "status", platform="discord", user="1001")
            assert "Status for discord:C1" in listed
        finally:
            await app.close()


async def test_a_change_applies_to_the_next_message(bot: GuardBot) -> None:
    before = await say(bot, LONG)
    assert before.action is Action.BLOCKED and before.reply == "Sorry, I can't help with that."
    answer = await admin(bot, "set refusal No way, that's not something I'll do.")
    assert answer.startswith("Set refusal = \"No way, that's not something I'll do.\" globally")
    assert 'was "Sorry, I can\'t help with that."' in answer
    after = await say(bot, LONG)
    assert after.reply == "No way, that's not something I'll do."
    assert after.config_fingerprint != before.config_fingerprint
    assert "hello" in (await say(bot, "hello")).reply


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("set best_of 99", "best_of: '99' is not valid; expected a whole number from 1 to 8"),
        ("set best_of three", "expected a whole number from 1 to 8"),
        ("set temperature -1", "expected a number from 0 to 2"),
        ("set selection random", "one of: first, judge, criteria, vote"),
        ("set guard.nope.threshold 0.5", "unknown guard 'nope'; guards: length"),
        ("guard disable nope", "unknown guard 'nope'"),
        ("guard threshold length 0.5", "guard 'length' (max_length) has no threshold"),
        ("set guard.length.enabled perhaps", "true or false"),
        ("set log.path /etc/passwd", "unknown setting 'log.path'"),
        ("set api_key_env EVIL", "unknown setting"),
        ("set model 'a b'", "expected a model name"),
        ("reset best_of", "best_of has no override globally; nothing to reset"),
        ("set best_of 2 --here", "--here needs the channel"),  # sent with no channel id
    ],
)
async def test_invalid_values_are_rejected_and_nothing_changes(
    bot: GuardBot, command: str, expected: str
) -> None:
    fingerprint = bot.effective_config(req())[1]
    answer = await admin(bot, command, channel="")
    assert answer.startswith("Not changed: ") and expected in answer, answer
    assert await bot.log.settings() == []
    assert bot.effective_config(req())[1] == fingerprint
    (row,) = await bot.log.admin_actions()
    assert row.allowed and row.error and expected in row.error and row.new is None


async def test_here_scopes_to_the_channel_and_wins_over_global(bot: GuardBot) -> None:
    answer = await admin(bot, "guard disable length --here", channel="C1")
    assert "in this channel (slack:C1)" in answer
    assert (await say(bot, LONG, channel="C1")).action is Action.REPLIED
    assert (await say(bot, LONG, channel="C2")).action is Action.BLOCKED
    await admin(bot, "set refusal Global no.")
    await admin(bot, "set --here refusal C2 no.", channel="C2")
    assert (await say(bot, LONG, channel="C2")).reply == "C2 no."
    assert (await say(bot, LONG, channel="C3")).reply == "Global no."
    # a global change says that a channel's own value still wins there
    note = await admin(bot, "guard enable length", channel="C1")
    assert "this channel has its own value, which still wins here" in note
    assert (await say(bot, LONG, channel="C1")).action is Action.REPLIED
    status = await admin(bot, "status", channel="C1")
    assert "length (max_length, input): OFF [this channel]" in status
    assert "overrides (this channel): guard.length.enabled=false" in status
    # reset --here falls back to the global value
    reset = await admin(bot, "reset guard.length.enabled --here", channel="C1")
    assert "now true from the global value (was false)" in reset
    assert (await say(bot, LONG, channel="C1")).action is Action.BLOCKED


async def test_settings_survive_a_restart(tmp_path: Path) -> None:
    first = await GuardBot.open(make_config(tmp_path), env={})
    try:
        await admin(first, "guard disable length")
        await admin(first, 'set refusal "Nope, here only." --here', channel="C9")
    finally:
        await first.close()
    second = await GuardBot.open(make_config(tmp_path), env={})
    try:
        assert (await say(second, LONG)).action is Action.REPLIED
        await admin(second, "guard enable length --here", channel="C9")
        decision = await say(second, LONG, channel="C9")
        assert decision.reply == "Nope, here only."
        assert "length (max_length, input): on [this channel]" in await admin(
            second, "guard list", channel="C9"
        )
    finally:
        await second.close()


async def test_a_setting_for_a_removed_guard_is_shown_and_can_be_removed(tmp_path: Path) -> None:
    first = await GuardBot.open(make_config(tmp_path), env={})
    try:
        await admin(first, "guard disable length --here")
    finally:
        await first.close()
    config = make_config(tmp_path).model_copy(update={"guards": []})  # operator removed it
    second = await GuardBot.open(config, env={})
    try:
        assert (await say(second, LONG)).action is Action.REPLIED  # the bot still runs
        status = await admin(second, "status")
        assert "ignored setting guard.length.enabled (channel:slack:C1): unknown guard" in status
        answer = await admin(second, "reset guard.length.enabled --here")
        assert answer.startswith("Removed guard.length.enabled in this channel (slack:C1)")
        assert await second.log.settings() == []
        assert "ignored setting" not in await admin(second, "status")
    finally:
        await second.close()


async def test_every_change_is_on_the_audit_trail(bot: GuardBot) -> None:
    await admin(bot, "set best_of 3")
    await admin(bot, "set best_of 2", user="UADMIN", channel="C7")
    await admin(bot, "guard threshold length 0.5")  # rejected: recorded with its error
    await admin(bot, "reset best_of")
    rows = list(reversed(await bot.log.admin_actions()))
    changes = [(r.key, r.scope, r.old, r.new, r.allowed, r.error) for r in rows]
    assert changes[0] == ("best_of", "global", None, 3, True, None)
    assert changes[1] == ("best_of", "global", 3, 2, True, None)
    assert changes[2][0:2] == ("guard.length.threshold", "global") and changes[2][5]
    assert changes[3] == ("best_of", "global", 2, None, True, None)
    assert rows[1].actor == "slack:UADMIN" and rows[1].channel_id == "C7"
    assert rows[1].platform == "slack" and rows[1].command == "set best_of 2"


async def test_recent_why_and_stats(bot: GuardBot) -> None:
    await say(bot, "hello <!channel> @everyone")
    blocked = await say(bot, LONG, channel="C2")
    recent = await admin(bot, "recent 5")
    short = (await bot.log.short_ids([blocked.id]))[blocked.id]
    assert recent.count("\n") == 2 and f"\n{short}  " in recent
    assert blocked.id not in recent and 7 <= len(short) < len(blocked.id)  # as `logs` shows it
    assert "<!channel>" not in recent and "@everyone" not in recent  # mentions defused
    only_blocked = await admin(bot, "recent --blocked")
    assert short in only_blocked and "hello" not in only_blocked
    assert "No decisions yet in this channel" in await admin(bot, "recent --here", channel="C5")
    why = await admin(bot, f"why {blocked.id}")
    assert f"Decision {blocked.id}: blocked by length" in why
    assert "because: guard length (input) said block" in why
    assert "reply: Sorry, I can't help with that." in why
    assert "No decision with id" in await admin(bot, "why 0123456789")
    stats = await admin(bot, "stats --since 1h")
    assert "2 messages since" in stats and "1 blocked (50.0%)" in stats
    assert "blocks by guard: length 1" in stats
    # the reads are on the audit trail as well (who looked at which decisions)
    commands = [r.command for r in await bot.log.admin_actions()]
    assert f"why {blocked.id}" in commands


async def test_replay_summary_from_chat(bot: GuardBot) -> None:
    await say(bot, LONG)
    await admin(bot, "guard disable length")
    answer = await admin(bot, "replay --since 1h")
    assert "Replay of 1 decision(s)" in answer and "newly allowed 1" in answer
    assert "cannot read the time 'someday'" in await admin(bot, "replay --since someday")


async def test_help_and_status(bot: GuardBot) -> None:
    help_text = await admin(bot, "help")
    for usage in ("status", "set KEY VALUE [--here]", "guard list", "recent", "why ID", "stats"):
        assert usage in help_text
    keys = await admin(bot, "help set")
    assert "best_of: a whole number from 1 to 8" in keys and "guard.NAME.on_error" in keys
    assert await admin(bot, "") == help_text
    status = await admin(bot, "status")
    assert 'model: "gpt-4o-mini" (offline: the echo model answers)' in status
    assert "best_of: 1, selection: judge" in status
    assert "recent block rate: no messages in the last 24h" in status
    await say(bot, LONG)
    await admin(bot, "set best_of 2")
    status = await admin(bot, "status")
    assert "best_of: 2 [global]" in status and "1 of 1 messages blocked" in status


async def test_status_never_shows_secrets(tmp_path: Path) -> None:
    config = make_config(tmp_path).model_copy(deep=True)
    config.llm.provider = "openai"
    config.llm.base_url = "http://user:hunter2@127.0.0.1:9/v1"
    app = await GuardBot.open(config, env={"OPENAI_API_KEY": "sk-very-secret"})
    try:
        status = await admin(app, "status")
        assert "sk-very-secret" not in status and "hunter2" not in status
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("x" * 100_000, "command too long (100000 characters; at most 4000)"),
        ('recent "5', "could not read the command (No closing quotation)"),
        ("recent 0", "N must be a whole number from 1 to 50"),
        ("recent 5 6", "usage: recent"),
        ("recent --all", "unknown option '--all'"),
        ("why", "give one decision id"),
        ("why '; DROP TABLE decisions; --'", "give one decision id"),
        ("frobnicate", "unknown command 'frobnicate'; try `help`"),
        ("help nope", "no command 'nope'"),
        ("set", "usage: set KEY VALUE"),
        ("set best_of", "missing value for 'best_of'"),
        ("set --everywhere best_of 2", "unknown option '--everywhere'"),
        ("stats --since", "--since needs a value"),
        ("stats --since tomorrowish", "--since: cannot read the time"),
        ("guard", "usage: guard list"),
        ("guard enable", "usage: guard list"),
        ("\x00\x00", "Admin commands"),  # only NULs: the same as empty, i.e. help
    ],
)
async def test_hostile_command_text_gets_a_clear_answer(
    bot: GuardBot, command: str, expected: str
) -> None:
    answer = await admin(bot, command)
    assert expected in answer, answer
    assert len(answer) < 2000
    assert await bot.log.settings() == []


async def test_quotes_and_unicode_values(bot: GuardBot) -> None:
    await admin(bot, "set refusal “Désolé — pas ça 🙅”")
    assert (await say(bot, LONG)).reply == "Désolé — pas ça 🙅"
    await admin(bot, "set system_prompt You're a pirate; answer like one.")
    config, _ = bot.effective_config(req())
    assert config.llm.system_prompt == "You're a pirate; answer like one."
    await admin(bot, "set\trefusal  '--here'")  # quoted: the text, not the flag
    assert (await say(bot, LONG)).reply == "--here"
    assert await bot.log.settings() and not bot.settings.overrides("channel:slack:C1")
    answer = await admin(bot, "set refusal " + "é" * 3000)
    assert len(answer) <= 1900 and answer.startswith("Set refusal")


async def test_set_model_reaches_the_server(tmp_path: Path, stub_llm: Any) -> None:
    config = make_config(tmp_path).model_copy(deep=True)
    config.llm.provider = "openai"
    config.llm.base_url = stub_llm.base_url
    config.guards = []
    app = await GuardBot.open(config, env={"OPENAI_API_KEY": "sk-test"})
    try:
        await say(app, "first")
        assert 'Set model = "llama3.1:8b" globally' in await admin(app, "set model llama3.1:8b")
        await say(app, "second")
        models = [r.body["model"] for r in stub_llm.chat_requests()]
        assert models == ["gpt-4o-mini", "llama3.1:8b"]
    finally:
        await app.close()


async def test_console_admin_lines(bot: GuardBot) -> None:
    lines = [
        b"/admin set refusal Not in this terminal.",
        LONG.encode(),
        b"/admin guard disable length",
        LONG.encode(),
        b"/admin set best_of 42",
        b"/admin why",
    ]
    stdout, stderr = io.StringIO(), io.StringIO()
    chat = ConsoleChat(
        bot,
        stdin=io.BytesIO(b"\n".join(lines) + b"\n"),
        stdout=stdout,
        stderr=stderr,
        interactive=False,
    )
    assert await chat.run() == 0
    out = stdout.getvalue().splitlines()
    assert out[0].startswith('Set refusal = "Not in this terminal." globally')
    assert out[1] == "Not in this terminal."
    assert out[2].startswith("Set guard.length.enabled = false globally")
    assert out[3] == f"(echo) {LONG}"
    assert out[4] == "Not changed: best_of: '42' is not valid; expected a whole number from 1 to 8"
    assert out[5].startswith("Sorry, I could not read that: give one decision id")
    rows = await bot.log.admin_actions()
    assert all(r.actor.startswith("console:") and r.channel_id == "console" for r in rows)


async def test_set_temperature_says_when_per_candidate_temperatures_win(tmp_path: Path) -> None:
    config = make_config(tmp_path).model_copy(deep=True)
    config.pipeline.temperatures = [0.2, 0.9]
    app = await GuardBot.open(config, env={})
    try:
        answer = await admin(app, "set temperature 0.1")
        assert answer.startswith("Set temperature = 0.1 globally")
        assert "[pipeline] temperatures is set" in answer
    finally:
        await app.close()
