"""Admin commands: tune the bot from chat, authorised and on record (see dispatch).

The commands are declared once in :mod:`.registry`; :mod:`.parser` reads their
text, :mod:`.commands` (settings) and :mod:`.decisions` (the log) answer them.
"""

from bot.admin.context import AdminHost
from bot.admin.dispatch import run_admin_command
from bot.admin.registry import REGISTRY

__all__ = ["REGISTRY", "AdminHost", "run_admin_command"]
