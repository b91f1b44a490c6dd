"""Replay: re-run logged decisions through a policy and report what would change.

Modules: :mod:`.select` (which decisions), :mod:`.rerun` (re-run one, a
bounded number at a time), :mod:`.diff` (what flipped), :mod:`.results` (the
values every output is built from), :mod:`.run` (a whole run, recorded),
:mod:`.render` / :mod:`.report_html` (terminal and HTML), :mod:`.summary`
(the admin chat command's short answer).
"""

from bot.replay.results import GuardFlip, Kind, ReplayResult, RunReport, Tally
from bot.replay.select import Selection
from bot.replay.session import ReplayOptions, replay_selected, run_replay
from bot.replay.summary import replay_summary

__all__ = [
    "GuardFlip",
    "Kind",
    "ReplayOptions",
    "ReplayResult",
    "RunReport",
    "Selection",
    "Tally",
    "replay_selected",
    "replay_summary",
    "run_replay",
]
