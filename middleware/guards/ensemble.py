"""``ensemble``: other configured guards as voters, blocking on a quorum.

``members = ["judge", "llama", "moderation"]`` with ``quorum = 2`` runs the
three in parallel and blocks when two say unsafe, stopping (and cancelling the
third) as soon as that is decided. Each member runs under its own
``timeout_s`` and ``on_error`` (an error from a fail-closed member is an
unsafe vote); the ensemble's own ``action`` applies once, to the result.
Members are usually configured with ``enabled = false`` so they do not also
run on their own.
"""

from __future__ import annotations

from functools import partial

from middleware.guards.config import EnsembleGuardConfig, GuardConfigBase
from middleware.guards.guard import Guard, GuardContext
from middleware.guards.runner import run_guard
from middleware.guards.voting import Voter, vote
from middleware.types import Verdict


class EnsembleGuard:
    def __init__(
        self, cfg: EnsembleGuardConfig, members: list[tuple[GuardConfigBase, Guard]]
    ) -> None:
        self.name = cfg.name
        self.quorum = cfg.effective_quorum()
        # Members report what they judged; flag/redact is the ensemble's call.
        self.members = [(c.model_copy(update={"action": "block"}), g) for c, g in members]
        # Offline when no member can vote (every one an LLM guard without a model).
        self.offline = all(getattr(g, "offline", False) for _, g in members)

    async def check(self, text: str, context: GuardContext) -> Verdict:
        voters = [
            Voter(
                name=cfg.name,
                run=partial(run_guard, guard, cfg, text, context),
                error_is_unsafe=cfg.on_error == "block",
            )
            for cfg, guard in self.members
        ]
        return await vote(self.name, context, voters, self.quorum)
