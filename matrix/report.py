"""Build the version matrix report from the cells' JSON results.

    python matrix/report.py matrix/results --out matrix --readme README.md

writes ``matrix.json`` (every cell, as run), ``matrix.md`` (one table per transport),
``matrix.html`` (self-contained: a coloured grid of library version x scenario x
transport, each cell linking to its close-code trace further down the page) and the
README's matrix table (between its markers).

    python matrix/report.py matrix/results --check --readme README.md

is the regression gate: it exits 1 and names every cell whose verdict differs from the
expected one in ``matrix/expected.toml`` (an unexpected pass too, so the table changes on
purpose), every expected cell that was not run, and a README table that is stale.
``--write-expected`` rewrites ``expected.toml`` from the results, for a change of verdict
that is meant.

Standard library only, so it runs outside the cells' environments. Field reports from the
libraries' issue trackers are a small table here; where the simulator's verdict for a
version differs from what users reported for it, the report says so.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "matrix" / "expected.toml"
README_BEGIN = "<!-- matrix table: written by matrix/report.py from matrix/results; do not edit -->"
README_END = "<!-- end of matrix table -->"


def _library_facts() -> ModuleType:
    """core/notetaker/libraries.py by path (standard library only): the report runs
    outside the cells' environments."""
    path = ROOT / "core" / "notetaker" / "libraries.py"
    spec = importlib.util.spec_from_file_location("notetaker_library_facts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


FACTS = _library_facts()

CHECKS = (
    "connect",
    "receive",
    "port-strip-4006",
    "stale-session-4006",
    "dave-required-4017",
    "crash-4015",
    "failover",
    "padding",
    "op5-late",
    "hello-late",
    "discovery-variant",
    "null-endpoint",
)
TRANSPORTS = ("native", "engine")
LIBRARIES = FACTS.DISCORD_LIBRARIES


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def before(version: str) -> Callable[[str], bool]:
    return lambda v: _v(v) < _v(version)


def since(version: str) -> Callable[[str], bool]:
    return lambda v: _v(v) >= _v(version)


@dataclass(frozen=True)
class FieldReport:
    """What users reported for a range of versions of one library, on the native transport."""

    library: str
    applies: Callable[[str], bool]
    versions: str  #: the range, as written in the report
    check: str
    #: "closed 4006", "closed 4017", or "connected" (a reported fix)
    expect: str
    source: str


#: From shared/design/libraries.md and voice-protocol.md section 3, and the trackers'
#: threads. Release numbers of fixes are where a tracker thread names them.
FIELD_REPORTS: tuple[FieldReport, ...] = (
    FieldReport(
        "discord.py",
        before("2.6.0"),
        "< 2.6.0",
        "port-strip-4006",
        "closed 4006",
        "discord.py #10207, #10228: 4006 on every voice connect once Discord moved voice off "
        "port 443 (2025); the client stripped the endpoint's port",
    ),
    FieldReport(
        "discord.py",
        since("2.6.0"),
        ">= 2.6.0",
        "port-strip-4006",
        "connected",
        "discord.py PR #10210 (voice v8, keep the endpoint's port), merged 2025-06, "
        "first released in 2.6.0",
    ),
    FieldReport(
        "py-cord",
        before("2.7.0"),
        "< 2.7.0",
        "port-strip-4006",
        "closed 4006",
        "py-cord #2827 (2025-07), #2833 (2025-08, on 2.6.1): 4006 on every voice connect",
    ),
    FieldReport(
        "py-cord",
        since("2.7.0"),
        ">= 2.7.0",
        "port-strip-4006",
        "connected",
        "py-cord PR #2812 (keep the port); users report 2.7.0 connects again",
    ),
    FieldReport(
        "py-cord",
        before("2.8.0"),
        "< 2.8.0",
        "dave-required-4017",
        "closed 4017",
        "py-cord #3135: 4017 once Discord enforced DAVE (2026-03-02); DAVE came in 2.8.0",
    ),
    FieldReport(
        "nextcord",
        before("3.1.1"),
        "< 3.1.1",
        "port-strip-4006",
        "closed 4006",
        "nextcord #1262: 4006 on voice connect (port stripping), fixed by PR #1264 "
        "(merged 2025-08; the release it shipped in is our reading, not the tracker's)",
    ),
)


def load_cells(results: Path) -> list[dict[str, Any]]:
    cells = []
    for path in sorted(results.glob("*.json")):
        try:
            cells.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
    order = {name: i for i, name in enumerate(LIBRARIES)}
    cells.sort(key=lambda c: (order.get(c["library"], 9), _v(c["version"])))
    return cells


def result_of(cell: dict[str, Any], transport: str, check: str) -> dict[str, Any] | None:
    for r in cell.get("results", []):
        if r["transport"] == transport and r["check"] == check:
            return r
    return None


def short(r: dict[str, Any] | None, cell: dict[str, Any]) -> str:
    """A grid cell's text."""
    if r is None:
        return "cannot install" if cell.get("error") else "not run"
    label = str(r["label"])
    if r["check"] == "receive" and r["outcome"] == "connected" and r.get("audio") is None:
        return "connected, no receive"
    return label


def colour(r: dict[str, Any] | None) -> str:
    if r is None or r.get("inconclusive"):
        return "grey"
    if r["ok"]:
        return "amber" if r["check"] == "receive" and r.get("audio") is None else "green"
    return "red"


def anchor(cell: dict[str, Any], transport: str, check: str) -> str:
    return f"t-{cell['backend']}-{cell['version']}-{transport}-{check}".replace(".", "_")


def disagreements(cells: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Field reports the simulator's verdict (native transport) does not bear out."""
    out = []
    for cell in cells:
        for fr in FIELD_REPORTS:
            if fr.library != cell["library"] or not fr.applies(cell["version"]):
                continue
            r = result_of(cell, "native", fr.check)
            if r is None:
                continue
            got = str(r["label"])
            agrees = got == fr.expect or (fr.expect == "connected" and r["ok"])
            if not agrees:
                out.append(
                    {
                        "library": cell["library"],
                        "version": cell["version"],
                        "check": fr.check,
                        "field": fr.expect,
                        "simulator": f"{got}: {r['cause']}",
                        "source": fr.source,
                    }
                )
    return out


def _name(cell: dict[str, Any]) -> str:
    return f"{cell['library']} {cell['version']}"


def markdown(cells: list[dict[str, Any]], notes: list[dict[str, str]]) -> str:
    lines = []
    for transport in TRANSPORTS:
        lines.append(f"**transport = {transport}**\n")
        lines.append("| library | " + " | ".join(CHECKS) + " |")
        lines.append("|---|" + "---|" * len(CHECKS))
        for cell in cells:
            row = [short(result_of(cell, transport, c), cell) for c in CHECKS]
            lines.append(f"| {_name(cell)} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append("Why (native transport; each distinct cause once, in check order):\n")
    for cell in cells:
        if cell.get("error"):
            lines.append(f"* {_name(cell)}: {cell['error']}")
            continue
        bad = [r for c in CHECKS if (r := result_of(cell, "native", c)) and not r["ok"]]
        seen: list[str] = []
        for r in bad:
            if r["cause"] not in seen:
                seen.append(r["cause"])
        if seen:
            lines.append(f"* {_name(cell)}: " + "; ".join(seen))
    lines.append("")
    lines.append(
        "Native mid-call checks run the library with its own reconnect off "
        "(`reconnect=False`): notetaker's supervisor decides, through the library's "
        "`connect()`.\n"
    )
    if notes:
        lines.append("Where the simulator disagrees with field reports:\n")
        for n in notes:
            lines.append(
                f"* {n['library']} {n['version']} `{n['check']}`: reported: "
                f"**{n['field']}** ({n['source']}); the simulator says **{n['simulator']}**"
            )
    else:
        lines.append("The simulator agrees with every field report in the table.")
    lines.append("")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #bbb;padding:.3em .5em;font-size:.85em;text-align:center}
th.lib{text-align:left}
td a{color:inherit;text-decoration:none;display:block}
.green{background:#b9e6b9}.red{background:#f2b3b3}.amber{background:#f5dc9a}
.grey{background:#ddd}
.trace td{text-align:left;font-family:monospace}
section{border-top:1px solid #ccc;margin-top:1em}
code{background:#f3f3f3}
"""


def page(cells: list[dict[str, Any]], notes: list[dict[str, str]]) -> str:
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>notetaker version matrix</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>notetaker: Discord library version matrix</h1>",
        "<p>Each library version runs a fixed scenario suite against the simulator, on the "
        "library's own voice client (<code>native</code>) and on notetaker's engine attached "
        "through the library (<code>engine</code>). Green: connected (and recorded both "
        "speakers, for <i>receive</i>); amber: connected, but the library's voice client "
        "cannot hand audio to notetaker; red: closed or failed. Click a cell for its trace."
        "</p>",
        "<table><tr><th rowspan=2 class=lib>library</th>",
    ]
    for t in TRANSPORTS:
        out.append(f"<th colspan={len(CHECKS)}>transport = {e(t)}</th>")
    out.append("</tr><tr>")
    questions: dict[str, str] = {}
    for cell in cells:
        questions.update(cell.get("checks", {}))
    for _ in TRANSPORTS:
        out.extend(f"<th title='{e(questions.get(c, ''))}'>{e(c)}</th>" for c in CHECKS)
    out.append("</tr>")
    for cell in cells:
        out.append(f"<tr><th class=lib>{e(_name(cell))}</th>")
        for t in TRANSPORTS:
            for c in CHECKS:
                r = result_of(cell, t, c)
                text = e(short(r, cell))
                title = e(r["cause"]) if r else e(cell.get("error", ""))
                link = f"<a href='#{anchor(cell, t, c)}'>{text}</a>" if r else text
                out.append(f"<td class={colour(r)} title='{title}'>{link}</td>")
        out.append("</tr>")
    out.append("</table>")
    out.append("<h2>Field reports</h2>")
    if notes:
        out.append("<p>Where the simulator's verdict differs from what users reported:</p><ul>")
        for n in notes:
            out.append(
                f"<li>{e(n['library'])} {e(n['version'])} <code>{e(n['check'])}</code>: "
                f"reported: <b>{e(n['field'])}</b> ({e(n['source'])}); the simulator "
                f"says <b>{e(n['simulator'])}</b></li>"
            )
        out.append("</ul>")
    else:
        out.append("<p>The simulator agrees with every field report below.</p>")
    out.append("<table><tr><th>library</th><th>versions</th><th>check</th><th>reported</th>")
    out.append("<th>source</th></tr>")
    for fr in FIELD_REPORTS:
        out.append(
            f"<tr><td>{e(fr.library)}</td><td>{e(fr.versions)}</td><td>{e(fr.check)}</td>"
            f"<td>{e(fr.expect)}</td><td class=lib>{e(fr.source)}</td></tr>"
        )
    out.append("</table><h2>Traces</h2>")
    for cell in cells:
        out.append(f"<h3>{e(_name(cell))} (Python {e(cell.get('python', '?'))})</h3>")
        if cell.get("error"):
            out.append(f"<p>{e(cell['error'])}</p>")
        for r in cell.get("results", []):
            a = anchor(cell, r["transport"], r["check"])
            out.append(f"<section id='{a}'><h4>{e(r['transport'])} / {e(r['check'])}: ")
            out.append(f"<span class={colour(r)}>{e(short(r, cell))}</span></h4>")
            out.append(f"<p>{e(r['cause'])} ({r['seconds']} s)</p>")
            if r.get("events"):
                out.append(f"<p>session events: {e(', '.join(r['events']))}</p>")
            out.append("<table class=trace><tr><th>t (s)</th><th>entry</th><th>data</th></tr>")
            for entry in r["trace"]:
                data = {k: v for k, v in entry.items() if k not in ("t", "kind")}
                out.append(
                    f"<tr><td>{entry['t']}</td><td>{e(entry['kind'])}</td>"
                    f"<td>{e(json.dumps(data))}</td></tr>"
                )
            out.append("</table></section>")
    out.append("</body></html>")
    return "\n".join(out)


# -- the gate -------------------------------------------------------------------------


Key = tuple[str, str, str, str]  #: (library, version, transport, check)
Expected = dict[Key, tuple[str, ...]]  #: the verdicts a cell may give (several: intermittent)


def verdict_of(cell: dict[str, Any], transport: str, check: str) -> str:
    """The verdict a cell gives one check: its label, or why there is none."""
    r = result_of(cell, transport, check)
    if r is None:
        return "cannot install" if cell.get("error") else "not run"
    return str(r["label"])


def load_expected(path: Path = EXPECTED) -> Expected:
    """``expected.toml``: ``["<library> <version>".<transport>]`` tables of check = label,
    or = a list of labels for a cell that is intermittent (either passes the gate)."""
    data = tomllib.loads(path.read_text())
    out: Expected = {}
    for name, transports in data.items():
        library, _, version = name.rpartition(" ")
        for transport, checks in transports.items():
            for check, label in checks.items():
                labels = label if isinstance(label, list) else [label]
                out[(library, version, transport, check)] = tuple(str(x) for x in labels)
    return out


def expected_text(cells: list[dict[str, Any]], previous: Expected | None = None) -> str:
    """``expected.toml`` holding the verdicts of ``cells`` (for --write-expected); a cell
    ``previous`` lists as intermittent stays so while its verdict is one of the list."""
    lines = [
        "# The version matrix's expected verdicts: what each library version does in each",
        "# scenario on each transport. `python matrix/report.py matrix/results --check` fails",
        "# on any cell that differs, an unexpected pass included. Change a verdict on",
        "# purpose: edit it here, or rerun the matrix and `report.py ... --write-expected`.",
        "# A list marks a cell that is intermittent: the library races itself there (see the",
        "# README's matrix section); each verdict in the list passes.",
    ]
    for cell in cells:
        for transport in TRANSPORTS:
            lines.append("")
            lines.append(f'["{_name(cell)}".{transport}]')
            for check in CHECKS:
                got = verdict_of(cell, transport, check)
                known = (previous or {}).get((cell["library"], cell["version"], transport, check))
                if known is not None and len(known) > 1 and got in known:
                    lines.append(f"{check} = [{', '.join(json.dumps(k) for k in known)}]")
                else:
                    lines.append(f'{check} = "{got}"')
    return "\n".join(lines) + "\n"


def differences(cells: list[dict[str, Any]], expected: Expected) -> list[str]:
    """One line per cell whose verdict is not the expected one, per expected cell that was
    not run, and per verdict that has no expected one."""
    by_name = {(c["library"], c["version"]): c for c in cells}
    out = []
    for (library, version, transport, check), want in sorted(
        expected.items(),
        key=lambda kv: (
            LIBRARIES.index(kv[0][0]) if kv[0][0] in LIBRARIES else 9,
            _v(kv[0][1]),
            kv[0][2],
            kv[0][3],
        ),
    ):
        cell = by_name.get((library, version))
        got = verdict_of(cell, transport, check) if cell else "not run"
        if got not in want:
            r = result_of(cell, transport, check) if cell else None
            why = f" ({r['cause']})" if r and r.get("cause") else ""
            surprise = " (an unexpected pass: update expected.toml)" if r and r["ok"] else ""
            wanted = repr(want[0]) if len(want) == 1 else "one of " + ", ".join(map(repr, want))
            out.append(
                f"{library} {version} {transport} {check}: expected {wanted}, "
                f"got {got!r}{surprise}{why}"
            )
    for cell in cells:
        for transport in TRANSPORTS:
            for check in CHECKS:
                key = (cell["library"], cell["version"], transport, check)
                if key not in expected and result_of(cell, transport, check) is not None:
                    out.append(
                        f"{_name(cell)} {transport} {check}: got "
                        f"{verdict_of(cell, transport, check)!r}, no expected verdict "
                        "(add it to matrix/expected.toml)"
                    )
    return out


# -- the README's table ------------------------------------------------------------------


def readme_table(cells: list[dict[str, Any]], expected: Expected | None = None) -> str:
    """The README's matrix section body: the engine's summary and the native table. A
    cell ``expected`` lists as intermittent reads the same whichever of its verdicts this
    run gave, so a rerun does not make the table stale."""
    lines = [README_BEGIN, ""]
    engine_bad = [
        f"{_name(c)} {check} ({verdict_of(c, 'engine', check)})"
        for c in cells
        for check in CHECKS
        if not ((r := result_of(c, "engine", check)) and r["ok"])
    ]
    if not engine_bad:
        lines.append(
            '**With `transport = "engine"` every version connects in every scenario and '
            "records both speakers.** With each library's own voice client "
            '(`transport = "native"`):'
        )
    else:
        lines.append(
            '**With `transport = "engine"` every version connects in every scenario and '
            "records both speakers except: " + "; ".join(engine_bad) + ".** With each "
            'library\'s own voice client (`transport = "native"`):'
        )
    lines.append("")
    lines.append("| library | " + " | ".join(CHECKS) + " |")
    lines.append("|---|" + "---|" * len(CHECKS))
    for cell in cells:
        row = []
        for check in CHECKS:
            known = (expected or {}).get((cell["library"], cell["version"], "native", check))
            if known and len(known) > 1 and verdict_of(cell, "native", check) in known:
                row.append("intermittent: " + " / ".join(known))
                continue
            row.append(short(result_of(cell, "native", check), cell))
        lines.append(f"| {_name(cell)} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def with_readme_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no matrix markers ({README_BEGIN!r} ... {README_END!r})")
    return readme[:start] + table + readme[end + len(README_END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, help="folder of the cells' JSON results")
    parser.add_argument("--out", type=Path, default=Path("matrix"), help="where to write")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming every cell that differs from --expected "
        "(and a stale --readme table)",
    )
    parser.add_argument("--expected", type=Path, default=EXPECTED, help="expected verdicts")
    parser.add_argument(
        "--write-expected", action="store_true", help="rewrite --expected from the results"
    )
    parser.add_argument("--readme", type=Path, help="the README whose matrix table to write")
    args = parser.parse_args(argv)
    cells = load_cells(args.results)
    if not cells:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    if args.check:
        return _check(cells, args.results, args.expected, args.readme)
    if args.write_expected:
        previous = load_expected(args.expected) if args.expected.is_file() else None
        args.expected.write_text(expected_text(cells, previous))
        print(f"wrote {args.expected} from {len(cells)} cells")
        return 0
    if args.readme is not None:
        text = args.readme.read_text()
        expected = load_expected(args.expected) if args.expected.is_file() else None
        args.readme.write_text(with_readme_table(text, readme_table(cells, expected)))
    notes = disagreements(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matrix.json").write_text(
        json.dumps({"cells": cells, "field_disagreements": notes}, indent=1)
    )
    (args.out / "matrix.md").write_text(markdown(cells, notes))
    (args.out / "matrix.html").write_text(page(cells, notes))
    print(markdown(cells, notes))
    return 0


def _check(
    cells: list[dict[str, Any]], results: Path, expected_path: Path, readme: Path | None
) -> int:
    expected = load_expected(expected_path)
    problems = differences(cells, expected)
    if readme is not None:
        text = readme.read_text()
        try:
            stale = with_readme_table(text, readme_table(cells, expected)) != text
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if stale:
                problems.append(
                    f"{readme}: the matrix table is stale; run python matrix/report.py "
                    f"{results} --readme {readme}"
                )
    for line in problems:
        print(f"MISMATCH {line}")
    n = sum(len(c.get("results", [])) for c in cells)
    if problems:
        print(f"{len(problems)} of the matrix's verdicts differ from {expected_path.name}")
        return 1
    print(f"all {n} verdicts of {len(cells)} cells are as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
