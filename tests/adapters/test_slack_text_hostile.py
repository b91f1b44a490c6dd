"""Hostile text through the Slack text conversions: linear time, same meaning.

Both conversions run on the event loop (an incoming event's text, every reply
posted), so a pattern that backtracks over a long run would freeze every
conversation of the bot. The inputs below took 5 to 20 seconds each with the
earlier patterns; now each is a few milliseconds. The bound asserted is two
hundred times that, so only a return to quadratic time fails it.
"""

from __future__ import annotations

import time

import pytest

from adapters.slack.text import from_slack, to_mrkdwn

N = 40_000  # Slack's own limit on a message's length

HOSTILE_REPLIES = {
    "unclosed bold": "**a " * (N // 4),
    "unclosed underline bold": "__a " * (N // 4),
    "unclosed strike": "~~a " * (N // 4),
    "a long link label": "[" + "a" * N + "](https://x.example)",
    "a long dotted link label": "[" + "a." * (N // 2) + "](https://x.example)",
}


@pytest.mark.parametrize("name", HOSTILE_REPLIES)
def test_a_hostile_reply_converts_in_linear_time(name: str) -> None:
    started = time.perf_counter()
    to_mrkdwn(HOSTILE_REPLIES[name])
    assert time.perf_counter() - started < 2.0


def test_a_hostile_mention_is_read_in_linear_time() -> None:
    started = time.perf_counter()
    assert from_slack("<@UBOT|" * (N // 7), "UBOT").startswith("<@UBOT|")
    assert time.perf_counter() - started < 2.0
    assert from_slack("hi <@UBOT|guardbot> there", "UBOT") == "hi there"


def test_emphasis_still_converts_and_stops_at_its_own_delimiter() -> None:
    assert to_mrkdwn("**bold** and __also__ and ~~gone~~") == "*bold* and *also* and ~gone~"
    assert to_mrkdwn("**2*3 = 6**") == "*2*3 = 6*"  # a single delimiter inside is text
    assert to_mrkdwn("**a **b**") == "**a *b*"  # "**" preceded by a space does not close


def test_a_label_naming_another_host_anywhere_is_not_shown() -> None:
    target = "https://x.example/page"
    for label in ("see a.evil.example.c", "x" * 5000 + " evil.example", "https://evil.example/x"):
        assert to_mrkdwn(f"[{label}]({target})") == f"<{target}>", label
    # a short last part is not a host ("a.b"), and the same host keeps its label
    assert to_mrkdwn(f"[v1.2 notes]({target})") == f"<{target}|v1.2 notes>"
    assert to_mrkdwn(f"[x.example docs]({target})") == f"<{target}|x.example docs>"
