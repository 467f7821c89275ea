"""Which Discord libraries are installed, told apart by distribution name.

py-cord and discord.py both install the ``discord`` module, so ``import discord`` cannot
say which one is there; the distribution metadata can, without importing anything.
"""

from __future__ import annotations

from importlib import metadata

#: Distribution names of the Discord libraries notetaker knows.
DISCORD_LIBRARIES = ("py-cord", "discord.py", "nextcord")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None if it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def installed_discord_libraries() -> dict[str, str]:
    """Distribution name -> version for each known Discord library installed here."""
    found = {}
    for dist in DISCORD_LIBRARIES:
        version = installed_version(dist)
        if version is not None:
            found[dist] = version
    return found
