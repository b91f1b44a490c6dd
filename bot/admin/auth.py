"""Who may run admin commands: one check, used by every platform, deny by default.

An admin is listed in ``[admin] users`` as ``platform:user_id`` (or
``platform:*`` for everyone on that platform, meant for the local console),
or, on Discord only, is a member with Manage Server when
``discord_manage_guild`` is on; the adapter reports that as
``platform_admin``. The list is read from `config.toml` only: no runtime
setting can widen it, so an admin cannot grant admin rights from chat.
"""

from __future__ import annotations

from bot.config.schema import AdminConfig
from middleware.types import ChatRequest

REFUSAL = (
    "Sorry, admin commands are only for this bot's admins, and you ({actor}) are not one. "
    "The attempt was logged. An operator can add you to [admin] users in config.toml."
)


def actor_of(request: ChatRequest) -> str:
    """How the audit trail names a user: ``slack:U123``."""
    return f"{request.platform}:{request.user_id or '?'}"


def is_admin(admin: AdminConfig, request: ChatRequest, *, platform_admin: bool = False) -> bool:
    if not request.platform or not request.user_id:
        return False
    allowed = set(admin.users)
    if f"{request.platform}:{request.user_id}" in allowed or f"{request.platform}:*" in allowed:
        return True
    return request.platform == "discord" and platform_admin and admin.discord_manage_guild
