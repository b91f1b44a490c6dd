"""What Slack sends to a bot: signed Events API bodies and slash commands.

Signatures are computed here the documented way (``v0`` HMAC-SHA256 over
``v0:timestamp:body``), independently of slack-bolt, so the bolt app is
checked against Slack's scheme rather than against itself.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signed_headers(
    body: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Headers Slack would send with ``body``, signed the documented way (v0, HMAC-SHA256)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def event_callback(event: dict[str, Any], *, event_id: str, team_id: str = "T1") -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": team_id, "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
    }


def slash_command(
    text: str,
    *,
    user_id: str,
    response_url: str,
    command: str = "/guardbot",
    channel_id: str = "C1",
    team_id: str = "T1",
) -> dict[str, str]:
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "channel_id": channel_id,
        "channel_name": "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": f"trigger-{user_id}",
    }
