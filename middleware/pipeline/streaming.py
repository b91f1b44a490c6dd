"""Screened streaming: the contract between the pipeline and whatever shows a reply.

The pipeline releases a reply in chunks, each only after every input guard and
the output guards have passed it; an adapter shows them (by editing one message,
Slack's streaming methods, or printing). Middleware knows nothing about the
platform, so it talks to a :class:`ReplyView`; the bot wraps the adapter's view
in one that commits each chunk to the decision log before it is shown.
"""

from __future__ import annotations

from typing import Protocol


class ReplyView(Protocol):
    """Where a reply is shown while it is generated.

    ``show`` gets the whole screened text released so far (each call extends
    the previous one), so a view that throttles updates simply shows the latest
    text it was given. ``retract`` replaces everything shown (a late block, or
    a stream that broke off) with ``text``. Neither raises for a platform
    failure: a view records it and the adapter reports it on the delivery.
    """

    async def show(self, text: str) -> None: ...

    async def retract(self, text: str) -> None: ...
