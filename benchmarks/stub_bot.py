"""The bot the stub-server benchmarks measure: its config and its messages, in one place.

``latency.py`` and ``http_overhead.py`` both run the whole bot against the
"latency" scenario of ``tests/stubs/process.py``: generation by
:data:`GEN_MODEL` after GEN ms, and an ``llm_judge`` input guard by
:data:`GUARD_MODEL` after GUARD ms that finds a message unsafe when it says
BLOCKME. Both import this module, whether run as a script from the repository
root (each puts the repository first on ``sys.path``) or as
``python -m benchmarks.<name>``.
"""

from __future__ import annotations

GEN_MODEL = "gen-model"
GUARD_MODEL = "guard-model"


def bot_config(base_url: str, db: str, transport: str | None = None) -> str:
    """The bot's config.toml: the stub as its model, one judge, its log at ``db``.

    ``transport`` sets ``[llm] transport``; None leaves it out (the default, and
    what a checkout from before the key understands).
    """
    return f"""
[llm]
provider = "openai"
model = "{GEN_MODEL}"
base_url = "{base_url}"
max_retries = 0
{f'transport = "{transport}"' if transport else ""}

[[guards]]
name = "judge"
kind = "llm_judge"
model = "{GUARD_MODEL}"
timeout_s = 10

[log]
path = "{db}"
"""


def text_for(i: int, unsafe: bool) -> str:
    """Message ``i``; an unsafe one is blocked by the judge (and its generation closed)."""
    return f"message {i} " + ("BLOCKME please" if unsafe else "hello")
