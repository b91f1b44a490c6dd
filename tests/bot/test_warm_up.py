"""GuardBot.warm_up: guards built at start, the start's heap frozen once, young GC tuned.

Run in a fresh interpreter: freezing is per process, and the test process may have
frozen its heap already through another test's bot.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from bot.app import GuardBot
    from bot.config.schema import load_config
    from pathlib import Path

    async def main() -> None:
        config = load_config(Path("config.toml"))
        config = config.model_copy(
            update={"log": config.log.model_copy(update={"path": sys.argv[1]})}
        )
        assert gc.get_freeze_count() == 0
        bot = await GuardBot.open(config, env={})
        try:
            frozen = gc.get_freeze_count()
            tracked = {id(o) for o in gc.get_objects()}
            guards = bot.policy_for(bot_request())[1].guards
            # The guards built at start are out of the collector's sight ...
            assert guards and not any(id(g.guard) in tracked for g in guards), "not frozen"
            assert gc.get_threshold()[0] == 10_000  # in-flight messages are not walked often
            collections = []
            gc.callbacks.append(lambda phase, info: collections.append(phase))
            bot.warm_up()  # ... and a second warm-up neither collects nor freezes again
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


def test_open_freezes_what_start_built_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "g.db")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 10_000  # the imports and the guards' tables
