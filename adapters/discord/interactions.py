"""Answering one ``/guardbot`` interaction: ephemeral, and deferred when slow.

Discord drops an interaction that gets no response within 3 seconds. Most
admin commands answer in milliseconds, so the answer is sent directly; one
that takes longer than ``defer_after_s`` (``replay``, a slow disk) is first
deferred ("guardbot is thinking…") and then answered with a follow-up. Both
are ephemeral: only the admin sees them. Whether the user may run the
command is the application's decision; this module reports Manage Server.

Discord keeps showing a command as it was registered, for a while after an
upgrade changed it (global commands take up to an hour), so an interaction may
name a subcommand or options this version does not have. discord.py cannot
run it; :func:`answer_command_error` says so to the user instead of leaving
"The application did not respond" and a traceback in the log.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

from adapters.base import MessageHandler
from adapters.discord.delivery import (
    MESSAGE_LIMIT,
    NO_PINGS,
    SEND_ERRORS,
    describe,
    describe_error,
)
from adapters.discord.messages import home_channel_id
from adapters.message_split import split_message
from middleware.types import ChatRequest

log = logging.getLogger("guardbot.discord")

FAILED = "Sorry, that admin command failed on my side; the bot's log has the details."
OUT_OF_DATE = (
    "That /guardbot command is not one this version of guardbot knows (Discord may still "
    "show an older form). Try again in a minute, or see /guardbot help."
)


def admin_request(interaction: discord.Interaction, command: str) -> ChatRequest:
    """Who ran the command, and where (a thread counts as its parent channel)."""
    channel = interaction.channel
    thread_id = str(channel.id) if isinstance(channel, discord.Thread) else ""
    channel_id = home_channel_id(channel) or interaction.channel_id
    return ChatRequest(
        platform="discord",
        channel_id=str(channel_id or ""),
        thread_id=thread_id,
        user_id=str(interaction.user.id),
        user_name=interaction.user.display_name,
        message_id=str(interaction.id),
        text=f"/guardbot {command}",
    )


def has_manage_server(interaction: discord.Interaction) -> bool:
    """Manage Server in this server (never in a DM, where no server permissions exist)."""
    return interaction.guild is not None and interaction.permissions.manage_guild


async def answer_admin(
    interaction: discord.Interaction,
    handler: MessageHandler,
    command: str,
    *,
    defer_after_s: float,
) -> None:
    request = admin_request(interaction, command)
    work = asyncio.create_task(
        handler.admin(request, command, platform_admin=has_manage_server(interaction))
    )
    try:
        done, _ = await asyncio.wait({work}, timeout=defer_after_s)
        if not done:
            await _defer(interaction)
        answer = await work
    except Exception:
        log.exception("Discord: /guardbot %s failed", command.split(" ", 1)[0])
        answer = FAILED
    finally:
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
    await answer_ephemeral(interaction, answer)


async def _defer(interaction: discord.Interaction) -> None:
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
    except discord.HTTPException as exc:
        log.warning("Discord: could not defer /guardbot: %s", describe(exc))


async def answer_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """The response if none was sent yet, else follow-ups; split at 2,000 characters."""
    pieces = split_message(text, MESSAGE_LIMIT) or ["(no output)"]
    try:
        for piece in pieces:
            if interaction.response.is_done():
                await interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_PINGS)
            else:
                await interaction.response.send_message(
                    piece, ephemeral=True, allowed_mentions=NO_PINGS
                )
    except SEND_ERRORS as exc:  # a dropped connection too: never an unhandled error
        log.warning("Discord: could not answer /guardbot: %s", describe_error(exc))


async def answer_command_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """A ``/guardbot`` interaction discord.py could not run: answered, one log line."""
    if isinstance(error, app_commands.CommandInvokeError):  # a bug on our side
        log.error("Discord: /guardbot failed", exc_info=error.original)
        text = FAILED
    else:  # an unknown command, options that changed, a value out of range
        # The error's text can quote option values a user typed: log only its kind.
        log.warning("Discord: cannot run a /guardbot interaction (%s)", type(error).__name__)
        text = OUT_OF_DATE
    await answer_ephemeral(interaction, text)
