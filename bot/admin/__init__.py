"""Admin commands: tune the bot from chat, authorised and on record (see dispatch)."""

from bot.admin.dispatch import run_admin_command

__all__ = ["run_admin_command"]
