"""notetaker: a self-hosted Discord voice note-taker."""

__version__ = "0.1.0"
