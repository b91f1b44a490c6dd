"""What an adapter needs from the application, as a protocol.

Adapters sit below `bot` in the import graph, so they receive an object with
this shape (``bot.app.GuardBot``) instead of importing it.
"""

from __future__ import annotations

from typing import Protocol

from middleware.types import ChatRequest, Decision


class MessageHandler(Protocol):
    async def handle(self, request: ChatRequest) -> Decision:
        """Run one message through the pipeline; the decision is committed on return."""
        ...

    async def record_delivery(self, decision: Decision, *, sent: bool, error: str | None) -> None:
        """Record whether the reply reached the platform."""
        ...

    async def admin(
        self, request: ChatRequest, command: str, *, platform_admin: bool = False
    ) -> str:
        """Run an admin command (text after `/guardbot` or `/admin`); returns the answer."""
        ...
