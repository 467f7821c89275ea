"""The matrix report builder: grid, anchors to traces, and field-report disagreements."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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
