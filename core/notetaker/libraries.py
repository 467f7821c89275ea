"""What notetaker knows about each Discord library, per version, in one table; and which
of them are installed, told apart by distribution name.

py-cord and discord.py both install the ``discord`` module, so ``import discord`` cannot
say which one is there; the distribution metadata can, without importing anything.

The facts (:data:`LIBRARIES`) are the one source for the doctor, the noxfile, the version
matrix and the tests. Standard library only: the noxfile and ``matrix/report.py`` load
this file by path, outside any environment that has notetaker installed. Where a fact
comes from: shared/design/libraries.md, the libraries' release notes and source (read in
their wheels), and the version matrix's own runs where those disagreed with a page
(discord.py 2.4 offers no rtpsize mode: its matrix cell fails choosing one).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

PYTHONS = ("3.11", "3.12", "3.13")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.10.2"`` -> ``(2, 10, 2)``; a pre-release tail is ignored (``"2.8.0rc1"`` -> (2, 8))."""
    out = []
    for part in version.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def _since(version: str, first: str | None) -> bool:
    return first is not None and version_tuple(version) >= version_tuple(first)


@dataclass(frozen=True)
class Library:
    """One Discord library and the first release of each thing that decides whether its
    own voice client gets into voice on today's Discord."""

    backend: str  #: notetaker's backend plugin name: ``pycord``
    distribution: str  #: the name on the package registry: ``py-cord``
    #: first release offering ``aead_xchacha20_poly1305_rtpsize`` (Discord's only mode
    #: family since 2024-11-18: without it the library cannot choose a mode)
    first_rtpsize: str
    #: first release keeping the endpoint's port (Discord moved voice off 443 in 2025:
    #: stripping it reaches :443 and is closed with 4006)
    first_keeps_port: str
    #: first release whose own voice client offers DAVE (Discord closes voice without it
    #: with 4017 since 2026-03-02); None: no release does
    first_dave: str | None
    #: what its DAVE needs installed (core installs davey; dave.py is the voice extra's)
    dave_needs: str
    #: the releases the version matrix runs (the newest of each minor it covers); the
    #: last is the newest, which the backend sessions, the demo and CI run
    matrix: tuple[str, ...]
    #: the first release whose ``voice`` extra installs beside core (``None``: all do).
    #: nextcord before 3.2 pins pynacl < 1.5 there, core needs >= 1.5.
    voice_extra_from: str | None = None
    #: releases from here on need at least this Python (nextcord 3.x: 3.12)
    min_python: tuple[str, str] | None = None
    #: releases before this one ``import audioop`` (gone in Python 3.13)
    audioop_until: str | None = None
    #: extra requirements of an environment for some releases (release -> requirements)
    extras: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def newest(self) -> str:
        return self.matrix[-1]

    def release(self, version: str) -> Release:
        """The facts of one release of this library."""
        pythons: tuple[str, ...] = PYTHONS
        if self.audioop_until and not _since(version, self.audioop_until):
            pythons = tuple(p for p in pythons if version_tuple(p) < (3, 13))
        if self.min_python and _since(version, self.min_python[0]):
            floor = version_tuple(self.min_python[1])
            pythons = tuple(p for p in pythons if version_tuple(p) >= floor)
        with_extra = self.voice_extra_from is None or _since(version, self.voice_extra_from)
        return Release(
            library=self,
            version=version,
            rtpsize=_since(version, self.first_rtpsize),
            keeps_port=_since(version, self.first_keeps_port),
            dave=_since(version, self.first_dave),
            pythons=pythons,
            voice_requirement=(
                f"{self.distribution}[voice]=={version}"
                if with_extra
                else f"{self.distribution}=={version}"
            ),
            extra_requirements=dict(self.extras).get(version, ()),
        )


@dataclass(frozen=True)
class Release:
    """What one release of a library can do with its own voice client."""

    library: Library
    version: str
    rtpsize: bool  #: offers an rtpsize mode Discord accepts
    keeps_port: bool  #: connects to the endpoint's own port
    dave: bool  #: offers DAVE (with :attr:`Library.dave_needs` installed)
    pythons: tuple[str, ...]  #: the CPythons (of :data:`PYTHONS`) it runs on
    #: how its docs say to install it for voice, as one requirement
    voice_requirement: str
    extra_requirements: tuple[str, ...] = ()

    @property
    def python(self) -> str:
        """The Python its environments use: the oldest it accepts."""
        return self.pythons[0]

    @property
    def joins_today(self) -> bool:
        """Whether its own voice client gets into voice on today's Discord."""
        return self.rtpsize and self.keeps_port and self.dave


LIBRARIES: tuple[Library, ...] = (
    Library(
        backend="pycord",
        distribution="py-cord",
        first_rtpsize="2.7.0",
        first_keeps_port="2.7.0",
        first_dave="2.8.0",
        dave_needs="davey",
        matrix=("2.5.0", "2.6.0", "2.6.1", "2.7.2", "2.8.1"),
        audioop_until="2.7.0",
    ),
    Library(
        backend="discordpy",
        distribution="discord.py",
        first_rtpsize="2.5.0",
        first_keeps_port="2.6.0",
        first_dave="2.7.0",
        dave_needs="davey",
        matrix=("2.3.2", "2.4.0", "2.5.2", "2.6.4", "2.7.1"),
    ),
    Library(
        backend="nextcord",
        distribution="nextcord",
        first_rtpsize="3.2.0",
        # PR #1264 (merged 2025-08): the release it shipped in is our reading of the
        # tracker; 3.1.1's own cell cannot show it (no rtpsize mode, it fails before).
        first_keeps_port="3.1.1",
        first_dave="3.2.0",
        dave_needs="dave.py",
        matrix=("2.6.0", "3.0.1", "3.1.1", "3.2.0"),
        voice_extra_from="3.2.0",
        min_python=("3.0.0", "3.12"),
        # nextcord 2.x imports pkg_resources, gone in setuptools 81
        extras=(("2.6.0", ("setuptools<81",)),),
    ),
    Library(
        backend="disnake",
        distribution="disnake",
        # 2.9.3's voice_client offers only aead_xchacha20_poly1305_rtpsize; 2.9.3 still
        # strips the endpoint's port (rpartition(":")), 2.10 keeps it; dave.py (libdave's
        # bindings, made by disnake's team) is in the voice extra from 2.12.0.
        first_rtpsize="2.9.0",
        first_keeps_port="2.10.0",
        first_dave="2.12.0",
        dave_needs="dave.py",
        matrix=("2.9.3", "2.10.2", "2.11.0", "2.12.2"),
    ),
)

#: Distribution names of the Discord libraries notetaker knows.
DISCORD_LIBRARIES = tuple(lib.distribution for lib in LIBRARIES)
BY_BACKEND = {lib.backend: lib for lib in LIBRARIES}
BY_DISTRIBUTION = {lib.distribution: lib for lib in LIBRARIES}


def release(distribution: str, version: str) -> Release:
    """The facts of ``distribution`` at ``version`` (KeyError for a library not known)."""
    return BY_DISTRIBUTION[distribution].release(version)


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
