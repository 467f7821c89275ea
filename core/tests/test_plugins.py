"""Plugin discovery through real entry points (a dist-info on sys.path), not mocks."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from notetaker import plugins
from notetaker.errors import PluginError, UnknownBackendError
from notetaker.hookspecs import hookimpl
from notetaker.registry import BackendSpec, Registry


def _install_fake_distribution(
    root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an importable distribution (dist-info with entry_points.txt) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[notetaker]\n{eps}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("nt_test_")]:
        del sys.modules[mod]


GOOD = """
from notetaker.hookspecs import hookimpl
from notetaker.registry import BackendSpec, RendererSpec

@hookimpl
def notetaker_register_backends(register):
    register.add(BackendSpec("fakecord", ("fakecord-lib",), factory=lambda s: "made"))

@hookimpl
def notetaker_register_renderers(register):
    register.add(RendererSpec("shout", "txt", render=lambda notes: "HI"))
"""


def test_entry_point_plugin_registers_backend_and_renderer(site: Path) -> None:
    _install_fake_distribution(
        site, "nt-test-good", {"good": "nt_test_good"}, {"nt_test_good": GOOD}
    )
    found = plugins.load()
    spec = found.backend("fakecord")
    assert spec.factory(None) == "made"
    assert found.renderers.get("shout") is not None
    assert found.library_versions(spec) == {"fakecord-lib": None}
    info = next(p for p in found.loaded if p.name == "good")
    assert (info.distribution, info.version, info.error) == ("nt-test-good", "1.2.3", None)


def test_broken_plugin_is_reported_and_does_not_stop_others(site: Path) -> None:
    _install_fake_distribution(
        site,
        "nt-test-mixed",
        {"good": "nt_test_good2", "broken": "nt_test_broken"},
        {"nt_test_good2": GOOD, "nt_test_broken": "import no_such_module_anywhere\n"},
    )
    found = plugins.load()
    assert "fakecord" in found.backends.names()
    (failed,) = [p for p in found.failed if p.name == "broken"]
    assert "no_such_module_anywhere" in (failed.error or "")
    assert "Traceback" in failed.detail


def test_duplicate_backend_name_is_an_error_attributed_to_the_second_plugin() -> None:
    class A:
        @hookimpl
        def notetaker_register_backends(self, register: Registry[BackendSpec]) -> None:
            register.add(BackendSpec("same", (), factory=object))

    class B(A):
        pass

    found = plugins.load(extra=[("first", A()), ("second", B())])
    assert found.backends.owner("same").startswith("first")
    (failed,) = [p for p in found.failed if p.name == "second"]
    assert "registered twice" in (failed.error or "")


def test_unknown_backend_lists_installed_ones() -> None:
    class P:
        @hookimpl
        def notetaker_register_backends(self, register: Registry[BackendSpec]) -> None:
            register.add(BackendSpec("alpha", (), factory=object))
            register.add(BackendSpec("beta", (), factory=object))

    found = plugins.load(extra=[("p", P())])
    with pytest.raises(UnknownBackendError) as info:
        found.backend("gamma")
    assert "'gamma'" in str(info.value)
    assert "alpha, beta" in str(info.value)


def test_unknown_backend_whose_plugin_failed_says_why(site: Path) -> None:
    _install_fake_distribution(
        site,
        "notetaker-gamma",
        {"gamma": "nt_test_gamma"},
        {"nt_test_gamma": "raise RuntimeError('boom')\n"},
    )
    found = plugins.load()
    with pytest.raises(PluginError, match="boom"):
        found.backend("gamma")
