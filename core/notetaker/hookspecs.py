"""Every hook a notetaker plugin can implement. Entry point group: ``notetaker``.

A plugin is a module (or object) named by an entry point in the ``notetaker`` group,
with functions decorated by :data:`hookimpl`. Plugin modules must be cheap to import:
register specs whose factories import the heavy library lazily.

Example (``backends/discordpy``)::

    from notetaker.hookspecs import hookimpl
    from notetaker.registry import BackendSpec

    @hookimpl
    def notetaker_register_backends(register):
        register.add(BackendSpec("discordpy", ("discord.py",), factory=_make))
"""

from __future__ import annotations

import pluggy

from notetaker.registry import (
    BackendSpec,
    Registry,
    RendererSpec,
    SummarizerSpec,
    TranscriberSpec,
)

PROJECT = "notetaker"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def notetaker_register_backends(register: Registry[BackendSpec]) -> None:
    """Register Discord backends with ``register.add(BackendSpec(...))``.

    Called once by :func:`notetaker.plugins.load` at start-up, for every plugin. A
    backend names the library distributions it wraps so ``notetaker plugins`` can show
    their installed versions without importing them.
    """


@hookspec
def notetaker_register_transcribers(register: Registry[TranscriberSpec]) -> None:
    """Register speech-to-text engines with ``register.add(TranscriberSpec(...))``.

    Called once by :func:`notetaker.plugins.load`. The ``transcriber`` setting picks
    one by name; its factory is called only when a meeting is transcribed.
    """


@hookspec
def notetaker_register_renderers(register: Registry[RendererSpec]) -> None:
    """Register notes formats with ``register.add(RendererSpec(...))``.

    Called once by :func:`notetaker.plugins.load`. Every registered renderer writes
    its file when notes are produced (``notes.<extension>``, or ``filename``), on a
    worker thread; ``render`` must be a pure function of the notes returning text or,
    for a picture, bytes. One that raises is logged and left out of that meeting's files.
    """


@hookspec
def notetaker_register_summarizers(register: Registry[SummarizerSpec]) -> None:
    """Register summarizers with ``register.add(SummarizerSpec(...))``.

    Called once by :func:`notetaker.plugins.load`. The ``summarizer`` setting picks one
    by name; its factory is called when a meeting's notes are made, and its ``digest``
    gets the notes (their numbered speech lines are what items cite). Its answer goes
    through :func:`notetaker.notes.digest.validate`'s rules; if it raises, the notes
    keep the extractive summary with a sentence saying why.
    """
