"""Run every benchmark and write benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.run                          # default sizes, a few minutes
    .venv/bin/python -m benchmarks.run --scale 0.01 --no-write  # smoke run (CI), well under 1 min
    .venv/bin/python -m benchmarks.run --only apply,flight      # some sections

Sections (each a module of this package, named for what it measures):

- ``apply``: bootstrap and change apply, raw Scan / GetRecords bodies replayed into the data
  path, per engine, against a naive baseline.
- ``freshness``: write acknowledged → visible through Flight SQL, emulator + runtime process.
- ``flight``: a large result through ADBC vs a raw pyarrow.flight server and PostgreSQL's
  protocol; results split over several endpoints.
- ``lookups``: prepared point lookups through ADBC, 1 and 8 clients.
- ``memory``: peak RSS of the runtime process during a bootstrap and a large result.
- ``profiles``: where the change-apply and bootstrap paths spend their time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import pg
from benchmarks.common import Config, Section, code_state, load_average, machine_line, table

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTIONS = ("apply", "freshness", "flight", "lookups", "memory", "profiles")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--postgres",
        default=pg.DEFAULT_DSN,
        help="libpq connection string of a PostgreSQL server ('' to skip PostgreSQL)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the report")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    command = shlex.join(
        ["python", "-m", "benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
    )
    started = time.perf_counter()
    load = load_average()
    postgres, why = pg.open_server(args.postgres) if args.postgres else (None, "not asked for")
    notes = [] if postgres else [f"PostgreSQL figures skipped: {why}."]
    for note in notes:
        print(note, flush=True)
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="dynamirror-bench-") as workdir:
        cfg = Config(args.scale, args.runs, postgres, Path(workdir))
        for name in wanted:
            print(f"\n== {name} ==", flush=True)
            began, load_before = time.perf_counter(), os.getloadavg()[0]
            try:
                section = importlib.import_module(f"benchmarks.{name}").run(cfg)
            except Exception:  # noqa: BLE001 - one broken section must not hide the others
                section = Section(f"{name}: FAILED", failed=True)
                section.add("```", traceback.format_exc().rstrip(), "```")
            section.seconds = time.perf_counter() - began
            section.load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
            sections.append(section)
    elapsed = time.perf_counter() - started
    previous = previous_figures(args.out)
    text = report(command, args, sections, notes, load, elapsed, previous)
    print("\n" + text)
    if not args.no_write:
        args.out.write_text(text)
        print(f"written to {args.out}")
    return 1 if any(s.failed for s in sections) else 0


def report(
    command: str,
    args: argparse.Namespace,
    sections: list[Section],
    notes: list[str],
    load: str,
    elapsed: float,
    previous: tuple[str, dict[str, str]] | None = None,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Every figure below was produced by one command, `{command}`, which took "
        f"{elapsed:,.0f} s (scale {args.scale:g}, {args.runs} runs per figure).",
        "",
        f"Machine: {machine_line()}. Load average (1 / 5 min) when the run started: {load}.",
        "",
        f"Code measured: {code_state()}.",
        "",
        f"Each figure is the median of {args.runs} runs unless its section says otherwise; "
        "each ratio compares two figures measured in this same run, on this same machine. "
        "Clients, servers and emulators all share the machine's cores.",
        *(["", *(f"- {n}" for n in notes)] if notes else []),
    ]
    targets = [t for s in sections for t in s.targets]
    if targets:
        lines += ["", "## Targets", ""]
        lines += table(
            ("target", "goal", "measured", "met"),
            [
                (t.name, t.goal, t.measured, "—" if t.met is None else "yes" if t.met else "**no**")
                for t in targets
            ],
        )
    headline = [(s.title, f, v) for s in sections for f, v in s.headline]
    if headline:
        lines += ["", "## Headline figures", ""]
        lines += table(("figure", "value"), [(f, v) for _, f, v in headline])
    if headline and previous:
        code, before = previous
        compared = [(f, before[f], v) for _, f, v in headline if f in before]
        if compared:
            lines += ["", "## Compared with the previous results", ""]
            lines += [f"The previous report (the file this run replaced) measured {code}.", ""]
            lines += table(("figure", "previous", "now"), compared)
    lines += ["", "## Time per section", ""]
    lines += table(
        ("section", "seconds", "load average (1 min) at start → end"),
        [(s.title, f"{s.seconds:,.0f}", s.load) for s in sections],
    )
    lines += [
        "",
        f"The machine has {os.cpu_count()} cores. The load average counts the benchmark's own "
        "processes too; at a section's start, before they run, it mostly shows other work on "
        "the machine, which competes for the cores and lowers and spreads the figures.",
    ]
    for section in sections:
        lines += ["", f"## {section.title}", *section.lines]
    return "\n".join(lines) + "\n"


def previous_figures(path: Path) -> tuple[str, dict[str, str]] | None:
    """The code line and headline figures of the report at ``path``, if there is one: each
    run shows what changed since the one before (the before / after of an optimisation)."""
    if not path.exists():
        return None
    code, figures, in_headline = "", {}, False
    for line in path.read_text().splitlines():
        if line.startswith("Code measured: "):
            code = line.removeprefix("Code measured: ").rstrip(".")
        elif line.startswith("## "):
            in_headline = line == "## Headline figures"
        elif in_headline and line.startswith("| ") and not line.startswith("| figure |"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if len(cells) == 2:
                figures[cells[0]] = cells[1]
    return (code, figures) if figures else None


if __name__ == "__main__":
    sys.exit(main())
