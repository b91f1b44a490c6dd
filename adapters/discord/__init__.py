"""Discord: a discord.py client, messages in, replies and /guardbot out."""
