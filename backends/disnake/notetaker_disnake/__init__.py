"""notetaker backend for disnake."""
