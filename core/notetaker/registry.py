"""What plugins register, and the registries they register into.

Plugins receive a registry in their hook and call ``register.add(...)``. The specs are
plain frozen data so that listing plugins (``notetaker plugins``) never imports a
Discord library or a model: factories are only called when the thing is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from notetaker.errors import PluginError


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """A Discord backend.

    ``libraries``: distribution names of the wrapped library (``"py-cord"``).
    ``factory(settings)`` returns the backend object; it may import the library.
    ``transports``: the transports it offers (``"engine"``, ``"native"``).
    """

    name: str
    libraries: tuple[str, ...]
    factory: Callable[..., Any]
    transports: tuple[str, ...] = ("engine", "native")
    description: str = ""


@dataclass(frozen=True, slots=True)
class TranscriberSpec:
    """A speech-to-text engine. ``factory(settings)`` returns a ``Transcriber``."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    libraries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RendererSpec:
    """A notes format. ``render(notes)`` returns the file's text (``str``) or bytes (a
    picture); the file is ``notes.<extension>`` unless ``filename`` names it."""

    name: str
    extension: str
    render: Callable[..., str | bytes]
    description: str = ""
    filename: str = ""

    @property
    def file_name(self) -> str:
        return self.filename or f"notes.{self.extension}"


@dataclass(frozen=True, slots=True)
class SummarizerSpec:
    """Who writes the notes' summary. ``factory(settings)`` returns an object with
    ``async digest(notes) -> Digest | None`` (None: keep the extractive summary)."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


T = TypeVar("T", BackendSpec, TranscriberSpec, RendererSpec, SummarizerSpec)


@dataclass
class Registry(Generic[T]):
    """Name -> spec, filled by plugins. A second registration of a name is an error."""

    kind: str
    _items: dict[str, T] = field(default_factory=dict)
    _owners: dict[str, str] = field(default_factory=dict)
    current_plugin: str = "?"

    def add(self, spec: T) -> None:
        if spec.name in self._items:
            raise PluginError(
                f"{self.kind} {spec.name!r} registered twice "
                f"(by {self._owners[spec.name]} and {self.current_plugin})"
            )
        self._items[spec.name] = spec
        self._owners[spec.name] = self.current_plugin

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)
