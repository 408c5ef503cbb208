"""Discord: the discord.py client, event translation, outbound adapter, formatting, commands and strings."""
