"""Plugin discovery through the ``notetaker`` entry point group.

A plugin that fails to import is recorded with its error and the others still load:
``notetaker plugins`` shows it, and asking for a backend it would have provided says
why it is missing.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from notetaker import hookspecs
from notetaker.errors import PluginError, UnknownBackendError
from notetaker.libraries import installed_version
from notetaker.registry import (
    BackendSpec,
    Registry,
    RendererSpec,
    SummarizerSpec,
    TranscriberSpec,
)

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "notetaker"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One entry point: where it came from and whether it loaded."""

    name: str
    distribution: str
    version: str
    error: str | None = None
    detail: str = ""


@dataclass
class Plugins:
    """Everything the installed plugins registered."""

    backends: Registry[BackendSpec] = field(default_factory=lambda: Registry("backend"))
    transcribers: Registry[TranscriberSpec] = field(default_factory=lambda: Registry("transcriber"))
    renderers: Registry[RendererSpec] = field(default_factory=lambda: Registry("renderer"))
    summarizers: Registry[SummarizerSpec] = field(default_factory=lambda: Registry("summarizer"))
    loaded: list[PluginInfo] = field(default_factory=list)

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.loaded if p.error is not None]

    def backend(self, name: str) -> BackendSpec:
        """The backend called ``name``; a clear error listing the installed ones if none."""
        spec = self.backends.get(name)
        if spec is None:
            broken = [p for p in self.failed if name in p.name or name in p.distribution]
            err = UnknownBackendError(name, self.backends.names())
            if broken:
                raise PluginError(
                    f"{err} The plugin {broken[0].name!r} from {broken[0].distribution} "
                    f"failed to load: {broken[0].error}"
                ) from err
            raise err
        return spec

    def library_versions(self, spec: BackendSpec | TranscriberSpec) -> dict[str, str | None]:
        """Installed version of each library ``spec`` wraps (None: not installed)."""
        return {lib: installed_version(lib) for lib in spec.libraries}


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load(extra: list[tuple[str, Any]] | None = None) -> Plugins:
    """Load every ``notetaker`` entry point (plus ``extra`` (name, module) pairs, for
    tests and embedding) and collect what they register."""
    pm = _manager()
    result = Plugins()
    candidates: list[tuple[str, str, str, Any]] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            log.warning("plugin %s from %s failed to load: %s", ep.name, dist, exc)
            result.loaded.append(
                PluginInfo(
                    ep.name, dist, version, f"{type(exc).__name__}: {exc}", traceback.format_exc()
                )
            )
            continue
        candidates.append((ep.name, dist, version, module))
    for name, module in extra or []:
        candidates.append((name, "(in process)", "", module))

    for name, dist, version, module in candidates:
        try:
            pm.register(module, name=name)
            for registry, hook in (
                (result.backends, pm.hook.notetaker_register_backends),
                (result.transcribers, pm.hook.notetaker_register_transcribers),
                (result.renderers, pm.hook.notetaker_register_renderers),
                (result.summarizers, pm.hook.notetaker_register_summarizers),
            ):
                registry.current_plugin = f"{name} ({dist})"
                # Called per plugin (not hook(...) once for all) so that one plugin's
                # failure is attributed to it and leaves the others registered.
                for impl in hook.get_hookimpls():
                    if impl.plugin_name == name:
                        impl.function(register=registry)
        except Exception as exc:
            if pm.is_registered(module):
                pm.unregister(module)
            log.warning("plugin %s from %s failed to register: %s", name, dist, exc)
            result.loaded.append(
                PluginInfo(
                    name, dist, version, f"{type(exc).__name__}: {exc}", traceback.format_exc()
                )
            )
            continue
        result.loaded.append(PluginInfo(name, dist, version))
    return result
