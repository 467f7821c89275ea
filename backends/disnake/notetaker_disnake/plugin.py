"""Registers the disnake backend. Cheap to import: disnake is imported only by the factory."""

from __future__ import annotations

from typing import Any

from notetaker.hookspecs import hookimpl
from notetaker.registry import BackendSpec, Registry


def _create(settings: Any, **kwargs: Any) -> Any:
    from notetaker_disnake.backend import create

    return create(settings, **kwargs)


@hookimpl
def notetaker_register_backends(register: Registry[BackendSpec]) -> None:
    register.add(
        BackendSpec(
            name="disnake",
            libraries=("disnake",),
            factory=_create,
            description=(
                "disnake: slash commands and voice state; voice through core's engine "
                "or the library's own client"
            ),
        )
    )
