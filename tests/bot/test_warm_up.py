"""Start-up: guards built when a bot opens; the collector tuned only for serving.

Opening a bot builds its guards (``warm_up``) and leaves the garbage collector as
Python set it: tests and one-shot commands (screen, replay, admin) open bots too.
``tune_gc_for_serving``, which `guardbot run` and `guardbot chat` call once the bot is
open, freezes what start built, once, and collects the youngest generation less often.
The freezing is checked in a fresh interpreter: it is per process.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.cli.run import serve
from bot.config.schema import parse_config

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from bot.app import GuardBot
    from bot.serving import tune_gc_for_serving
    from bot.config.schema import load_config
    from pathlib import Path

    async def main() -> None:
        config = load_config(Path("config.toml"))
        config = config.model_copy(
            update={"log": config.log.model_copy(update={"path": sys.argv[1]})}
        )
        assert gc.get_freeze_count() == 0
        defaults = gc.get_threshold()
        bot = await GuardBot.open(config, env={})
        try:
            guards = bot.policy_for(bot_request())[1].guards
            assert guards  # built at start, so the first message does not pay for them
            # Opening a bot leaves the collector alone ...
            assert gc.get_freeze_count() == 0 and gc.get_threshold() == defaults
            tune_gc_for_serving()  # ... serving tunes it
            frozen = gc.get_freeze_count()
            tracked = {id(o) for o in gc.get_objects()}
            # The guards built at start are out of the collector's sight ...
            assert not any(id(g.guard) in tracked for g in guards), "not frozen"
            assert gc.get_threshold() == (10_000, *defaults[1:])
            collections = []
            gc.callbacks.append(lambda phase, info: collections.append(phase))
            tune_gc_for_serving()  # ... and a second call neither collects nor freezes again
            assert collections == [] and gc.get_freeze_count() == frozen, collections
            print("frozen", frozen)
        finally:
            await bot.close()

    def bot_request():
        from middleware.types import ChatRequest
        return ChatRequest(platform="test", text="hi")

    asyncio.run(main())
    """
)


def test_opening_leaves_gc_alone_and_serving_freezes_what_start_built(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "g.db")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 10_000  # the imports and the guards' tables


COMMAND = textwrap.dedent(
    """
    import gc, sys
    from bot.cli.main import main
    code = main(["--config", sys.argv[1], sys.argv[2]])
    print(code, gc.get_threshold()[0], gc.get_freeze_count() > 0)
    """
)


@pytest.mark.parametrize(("command", "code"), [("run", 2), ("chat", 0)])
def test_the_serving_commands_tune_gc(tmp_path: Path, command: str, code: int) -> None:
    # `run` with no platform configured stops at "nothing to serve", `chat` at the end of
    # its input: both after the bot was open, the point where they tune the collector.
    config = tmp_path / "config.toml"
    config.write_text(f'[log]\npath = "{tmp_path / "g.db"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, str(config), command],
        cwd=REPO,
        input="",
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.stdout.split() == [str(code), "10000", "True"], done.stderr


async def test_serving_outside_the_command_leaves_gc_alone(tmp_path: Path) -> None:
    # A test (or any caller but `guardbot run`) that serves keeps the process's settings.
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    config = parse_config(f'[log]\npath = "{tmp_path / "g.db"}"\n', "test")
    assert await serve(config, {}) == 2  # nothing to serve, after the bot was open
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)
