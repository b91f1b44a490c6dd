"""The contracts between the application and its platform edges.

Adapters sit below `bot` in the import graph, so they receive an object with
the :class:`MessageHandler` shape (``bot.app.GuardBot``) instead of importing
it, and `guardbot run` drives every platform through the :class:`Service`
shape without knowing which one it is. :class:`AdapterConfigError` is how a
service says it cannot start as configured.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from adapters.admin import AdminCommands
from middleware.pipeline.streaming import ReplyView
from middleware.types import ChatRequest, Decision


class AdapterConfigError(Exception):
    """The adapter cannot start as configured; the message says what to fix.

    ``guardbot run`` turns it into one clear line for the operator (a missing
    token, a rejected token, a privileged intent not enabled) instead of a
    traceback, so messages name the variable, never its value.
    """


class MessageHandler(Protocol):
    async def handle(self, request: ChatRequest, view: ReplyView | None = None) -> Decision:
        """Run one message through the pipeline; the decision is committed on return.

        With a ``view`` the reply is streamed into it as screened chunks are
        released (each committed to the log first); the returned decision then
        says what was shown (``decision.stream``), and the adapter only
        finishes the message it has been updating.
        """
        ...

    async def record_delivery(self, decision: Decision, *, sent: bool, error: str | None) -> None:
        """Record whether the reply reached the platform."""
        ...

    async def record_cut_off(self, request: ChatRequest, why: str, elapsed_ms: float = 0.0) -> None:
        """Put a message that will get no reply on record (shutdown, say); never raises
        for a log that is down. Nothing was posted for it."""
        ...

    async def admin(
        self, request: ChatRequest, command: str, *, platform_admin: bool = False
    ) -> str:
        """Run an admin command (text after `/guardbot` or `/admin`); returns the answer."""
        ...

    @property
    def admin_commands(self) -> AdminCommands[Any]:
        """The admin commands as declared, for a platform that builds a form from them."""
        ...


class EventClaims(Protocol):
    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True when this instance claimed the event first, of every instance sharing
        the log (a platform's retry, or a copy delivered to another instance, is False)."""
        ...


class Service(Protocol):
    """A platform `guardbot run` serves: started once, stopped once, may fail in between."""

    name: str
    # Set when the platform connection ended for good after start (a revoked
    # token, a fatal close code): retrying cannot heal it, so the runner stops.
    failed: asyncio.Event
    # Why ``failed`` was set, for the operator; empty until then.
    failure: str

    async def start(self) -> None:
        """Connect and return once serving, or raise :class:`AdapterConfigError`."""
        ...

    async def stop(self) -> None:
        """Stop taking messages, let those in flight finish, then disconnect."""
        ...
