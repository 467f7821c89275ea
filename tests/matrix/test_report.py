"""The matrix report builder: grid, anchors to traces, and field-report disagreements."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("matrix_report", ROOT / "matrix" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _result(check: str, transport: str, label: str, cause: str) -> dict[str, Any]:
    ok = label in ("connected", "recorded")
    return {
        "check": check,
        "transport": transport,
        "label": label,
        "outcome": "connected" if ok else label.split()[0],
        "ok": ok,
        "audio": {"bob": 10, "carol": 9} if label == "recorded" else None,
        "cause": cause,
        "events": [],
        "seconds": 1.0,
        "trace": [{"t": 0.0, "kind": "close", "conn": "v1", "code": 4006, "by": "server"}],
    }


def _write_cells(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    # discord.py 2.5.2 strips the port: reported as 4006. Here the simulated verdict is
    # "connected", so the report must flag the disagreement; 2.7.1 agrees with its report.
    cells = {
        "discordpy-2.5.2": ("2.5.2", "connected"),
        "discordpy-2.7.1": ("2.7.1", "connected"),
    }
    for name, (version, strip) in cells.items():
        data = {
            "backend": "discordpy",
            "library": "discord.py",
            "version": version,
            "python": "3.11",
            "results": [
                _result("port-strip-4006", "native", strip, "v8"),
                _result("receive", "engine", "recorded", "frames"),
            ],
        }
        (results / f"{name}.json").write_text(json.dumps(data))
    (results / "nextcord-2.6.0.json").write_text(
        json.dumps(
            {
                "backend": "nextcord",
                "library": "nextcord",
                "version": "2.6.0",
                "results": [],
                "error": "cannot install: conflict",
            }
        )
    )
    return results


def test_report_flags_disagreement_and_links_every_cell(tmp_path: Path) -> None:
    report = _report()
    results = _write_cells(tmp_path)
    assert report.main([str(results), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "matrix.json").read_text())
    notes = data["field_disagreements"]
    assert [(n["version"], n["check"], n["field"]) for n in notes] == [
        ("2.5.2", "port-strip-4006", "closed 4006")
    ]
    md = (tmp_path / "out" / "matrix.md").read_text()
    assert "| discord.py 2.5.2 | not run | not run | connected |" in md
    assert "reported: **closed 4006**" in md
    assert "nextcord 2.6.0: cannot install: conflict" in md
    page = (tmp_path / "out" / "matrix.html").read_text()
    for cell in data["cells"]:
        for r in cell["results"]:
            a = report.anchor(cell, r["transport"], r["check"])
            assert f"href='#{a}'" in page and f"id='{a}'" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]


# -- the gate ---------------------------------------------------------------------------


def _copy_results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(ROOT / "matrix" / "results", out)
    return out


def _check(report: ModuleType, results: Path, *extra: str) -> int:
    return int(report.main([str(results), "--check", *extra]))


def test_the_committed_results_pass_the_gate_and_the_readme_table_is_current() -> None:
    """What CI runs after the matrix slice; a README table left stale fails here."""
    report = _report()
    readme = ROOT / "README.md"
    assert _check(report, ROOT / "matrix" / "results", "--readme", str(readme)) == 0
    cells = report.load_cells(ROOT / "matrix" / "results")
    assert report.readme_table(cells, report.load_expected()) in readme.read_text()


def _flip(results: Path, name: str, transport: str, check: str, label: str, ok: bool) -> None:
    path = results / f"{name}.json"
    cell = json.loads(path.read_text())
    (r,) = [r for r in cell["results"] if (r["transport"], r["check"]) == (transport, check)]
    r.update(label=label, ok=ok, cause="flipped by the test")
    path.write_text(json.dumps(cell))


def test_a_flipped_cell_fails_the_gate_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    results = _copy_results(tmp_path)
    assert _check(report, results) == 0
    capsys.readouterr()
    newest = report.FACTS.BY_BACKEND["discordpy"].newest
    _flip(results, f"discordpy-{newest}", "native", "dave-required-4017", "closed 4017", False)
    assert _check(report, results) == 1
    out = capsys.readouterr().out
    mismatches = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert mismatches == [
        f"MISMATCH discord.py {newest} native dave-required-4017: expected 'connected', "
        "got 'closed 4017' (flipped by the test)"
    ]


def test_an_unexpected_pass_fails_the_gate_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    results = _copy_results(tmp_path)
    _flip(results, "pycord-2.6.1", "native", "dave-required-4017", "connected", True)
    assert _check(report, results) == 1
    out = capsys.readouterr().out
    assert (
        "MISMATCH py-cord 2.6.1 native dave-required-4017: expected 'closed 4017', got "
        "'connected' (an unexpected pass: update expected.toml)" in out
    )


def test_a_cell_not_run_or_without_an_expected_verdict_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    results = _copy_results(tmp_path)
    (results / "pycord-2.5.0.json").unlink()
    cell = json.loads((results / "pycord-2.8.1.json").read_text())
    cell["version"] = "2.9.0"
    (results / "pycord-2.9.0.json").write_text(json.dumps(cell))
    assert _check(report, results) == 1
    out = capsys.readouterr().out
    assert "MISMATCH py-cord 2.5.0 native connect: expected 'error', got 'not run'" in out
    assert "MISMATCH py-cord 2.9.0 engine receive: got 'recorded', no expected verdict" in out


def test_a_stale_readme_table_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    results = _copy_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    assert _check(report, results, "--readme", str(readme)) == 0
    _flip(results, "pycord-2.7.2", "native", "failover", "error", False)
    (tmp_path / "expected.toml").write_text(report.expected_text(report.load_cells(results)))
    expected = ["--expected", str(tmp_path / "expected.toml")]
    assert _check(report, results, *expected, "--readme", str(readme)) == 1
    assert "the matrix table is stale" in capsys.readouterr().out
    # Writing the report brings the table up to date; the gate passes again.
    out = ["--out", str(tmp_path / "out"), "--readme", str(readme)]
    assert report.main([str(results), *expected, *out]) == 0
    assert _check(report, results, *expected, "--readme", str(readme)) == 0
    assert "| py-cord 2.7.2 |" in readme.read_text()


def test_an_intermittent_cell_passes_with_either_verdict_and_reads_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    results = _copy_results(tmp_path)
    expected = tmp_path / "expected.toml"
    text = report.expected_text(report.load_cells(results))
    lines = text.splitlines()
    at = lines.index('["py-cord 2.7.2".native]')
    failover = next(i for i in range(at, len(lines)) if lines[i].startswith("failover = "))
    lines[failover] = 'failover = ["connected", "error"]'
    expected.write_text("\n".join(lines) + "\n")
    args = ["--expected", str(expected)]
    tables = []
    for label, ok in (("connected", True), ("error", False)):
        _flip(results, "pycord-2.7.2", "native", "failover", label, ok)
        assert _check(report, results, *args) == 0
        tables.append(
            report.readme_table(report.load_cells(results), report.load_expected(expected))
        )
    assert tables[0] == tables[1] and "intermittent: connected / error" in tables[0]
    _flip(results, "pycord-2.7.2", "native", "failover", "closed 4006", False)
    capsys.readouterr()
    assert _check(report, results, *args) == 1
    assert (
        "MISMATCH py-cord 2.7.2 native failover: expected one of 'connected', 'error', got "
        "'closed 4006'" in capsys.readouterr().out
    )
    # rewriting the expected verdicts keeps the cell intermittent while it stays so
    _flip(results, "pycord-2.7.2", "native", "failover", "error", False)
    again = report.expected_text(report.load_cells(results), report.load_expected(expected))
    assert 'failover = ["connected", "error"]' in again
