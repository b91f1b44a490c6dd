"""Discord API objects as the real API shapes them, for the fake Discord.

Kept apart from the server so a test can read what a guild, a member, a
message or an interaction looks like on the wire. Only the fields discord.py
2.7.1 reads are filled in, with realistic values (snowflake ids, ISO times).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
MANAGE_GUILD = 1 << 5
_counter = itertools.count(1)

Json = dict[str, Any]


def snowflake() -> int:
    """A fresh id that sorts by time, like Discord's."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int, name: str, *, bot: bool = False) -> Json:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(
    user_obj: Json | None, *, roles: Sequence[int] = (), permissions: int | None = None
) -> Json:
    data: Json = {
        "roles": [str(r) for r in roles],
        "joined_at": now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
    }
    if user_obj is not None:
        data["user"] = user_obj
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def bot_role(role_id: int, bot_id: int, name: str) -> Json:
    """The role Discord creates for a bot when it joins (managed, tagged with the bot)."""
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "hoist": False,
        "position": 1,
        "permissions": "0",
        "managed": True,
        "mentionable": False,
        "flags": 0,
        "tags": {"bot_id": str(bot_id)},
    }


def text_channel(channel_id: int, guild_id: int, name: str) -> Json:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
    }


def thread(thread_id: int, guild_id: int, parent_id: int, owner_id: int, name: str) -> Json:
    return {
        "id": str(thread_id),
        "type": 11,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now_iso(),
            "locked": False,
        },
    }


def dm_channel(channel_id: int, recipient: Json) -> Json:
    return {"id": str(channel_id), "type": 1, "recipients": [recipient], "last_message_id": None}


def guild(
    guild_id: int,
    *,
    owner_id: int,
    channels: list[Json],
    members: Sequence[Json],
    threads: Sequence[Json] = (),
    roles: Sequence[Json] = (),
) -> Json:
    everyone = {
        "id": str(guild_id),
        "name": "@everyone",
        "color": 0,
        "hoist": False,
        "position": 0,
        "permissions": str(0x0000_0000_0006_4C40),  # view, send, read history, embed, attach
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    return {
        "id": str(guild_id),
        "name": "Test Server",
        "icon": None,
        "owner_id": str(owner_id),
        "roles": [everyone, *roles],
        "emojis": [],
        "stickers": [],
        "features": [],
        "channels": channels,
        "threads": list(threads),
        "members": list(members),
        "member_count": len(members),
        "large": False,
        "unavailable": False,
        "joined_at": now_iso(),
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "afk_channel_id": None,
        "system_channel_id": None,
        "nsfw_level": 0,
    }


def message(
    message_id: int,
    channel_id: int,
    author: Json,
    content: str,
    *,
    guild_id: int | None = None,
    mentions: Sequence[Json] = (),
    reference: Json | None = None,
    extra: Json | None = None,
) -> Json:
    data: Json = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": list(mentions),
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["member"] = member(None)
    if reference is not None:
        data["type"] = 19
        data["message_reference"] = {
            "type": 0,
            "message_id": reference["id"],
            "channel_id": reference["channel_id"],
            **({"guild_id": str(guild_id)} if guild_id is not None else {}),
        }
        # Discord resolves one level: the parent's own parent is only an id.
        data["referenced_message"] = {
            k: v for k, v in reference.items() if k != "referenced_message"
        }
    if extra:
        data.update(extra)
    return data


def slash_command(
    *,
    interaction_id: int,
    application_id: int,
    token: str,
    command_id: int,
    name: str,
    subcommand: str,
    options: Mapping[str, str | int | bool],
    invoker: Json,
    channel: Json,
    guild_id: int | None,
    permissions: int,
) -> Json:
    """An INTERACTION_CREATE for ``/name [group] subcommand option:value ...``."""
    typed = [{"name": k, "type": _option_type(v), "value": v} for k, v in options.items()]
    *group, leaf = subcommand.split()
    sub: Json = {"name": leaf, "type": 1, "options": typed}
    if group:  # a subcommand group (type 2) holding the subcommand
        sub = {"name": group[0], "type": 2, "options": [sub]}
    data: Json = {
        "id": str(interaction_id),
        "application_id": str(application_id),
        "type": 2,
        "token": token,
        "version": 1,
        "data": {"id": str(command_id), "name": name, "type": 1, "options": [sub]},
        "channel_id": channel["id"],
        "channel": channel,
        "locale": "en-US",
        "app_permissions": str(0xFFFF_FFFF),
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild_id)}
        if guild_id
        else {"1": invoker["id"]},
        "context": 0 if guild_id else 1,
        "attachment_size_limit": 10 * 1024 * 1024,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        data["guild_locale"] = "en-US"
        data["member"] = member(invoker, permissions=permissions)
    else:
        data["user"] = invoker
    return data


def _option_type(value: object) -> int:
    """Discord's option types: 5 boolean, 4 integer, 3 string."""
    return 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
