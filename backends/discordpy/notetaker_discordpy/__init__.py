"""notetaker backend for discord.py."""
