"""notetaker backend for nextcord."""
