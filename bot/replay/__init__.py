"""Replay: re-run logged decisions through a policy and report what would change.

Modules: :mod:`.select` (which decisions), :mod:`.rerun` (re-run one, a
bounded number at a time), :mod:`.diff` (what flipped), :mod:`.results` (the
values every output is built from), :mod:`.session` (a whole run, recorded),
:mod:`.render` / :mod:`.report_html` (terminal and HTML). The admin chat
command's short answer is :func:`bot.admin.decisions.replay_summary`.
"""

from bot.replay.results import GuardFlip, Kind, ReplayResult, RunReport, Tally
from bot.replay.select import DecisionFilter
from bot.replay.session import ReplayOptions, replay_selected, run_replay

__all__ = [
    "DecisionFilter",
    "GuardFlip",
    "Kind",
    "ReplayOptions",
    "ReplayResult",
    "RunReport",
    "Tally",
    "replay_selected",
    "run_replay",
]
