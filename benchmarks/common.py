"""What every benchmark shares: timing, medians, percentiles, the machine line, sections of the
report, and the per-process memory readings taken from /proc."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "pyarrow",
    "duckdb",
    "boto3",
    "botocore",
    "adbc-driver-flightsql",
    "psycopg",
    "pgpq",
    "moto",
    "sqlglot",
    "grpcio",
)


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one suite run, derived from ``--scale`` and ``--runs``."""

    scale: float
    runs: int
    postgres: str | None  # libpq connection string, None: PostgreSQL figures skipped
    workdir: Path

    def size(self, default: int, minimum: int) -> int:
        """``default`` at scale 1, never below ``minimum``."""
        return max(minimum, int(default * self.scale))

    def seconds(self, default: float, minimum: float) -> float:
        return max(minimum, default * self.scale)


@dataclass
class Measure:
    """One timed run: how much work, the wall-clock time and this process's CPU time."""

    records: int
    wall_s: float
    cpu_s: float
    extra_cpu_s: float = 0.0  # CPU spent elsewhere (a database server) for this run

    @property
    def rate(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_ms_per_1000(self) -> float:
        return 1e6 * self.cpu_s / self.records

    @property
    def extra_cpu_ms_per_1000(self) -> float:
        return 1e6 * self.extra_cpu_s / self.records

    @property
    def shards_per_core(self) -> float:
        """Fully loaded stream shards (1,000 records/s each) one core keeps up with."""
        return self.records / (self.cpu_s + self.extra_cpu_s) / 1000


def timed(run: Callable[[], int], extra_cpu: Callable[[], float] | None = None) -> Measure:
    """Time ``run`` (which returns how many records it handled)."""
    other = extra_cpu() if extra_cpu else 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    records = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    other = (extra_cpu() - other) if extra_cpu else 0.0
    return Measure(records, wall, cpu, other)


def median_measure(measures: Sequence[Measure]) -> Measure:
    """The run with the median rate (its CPU figures come with it)."""
    return sorted(measures, key=lambda m: m.rate)[len(measures) // 2]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def machine_line() -> str:
    packages = ", ".join(f"{p} {package_version(p)}" for p in PACKAGES)
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; {packages}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def code_state() -> str:
    """The commit measured, and which top-level folders had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        return "not a git checkout"
    dirty = sorted({line[3:].split("/")[0] for line in status if line[3:]})
    if not commit:
        return "not a git checkout"
    return f"commit {commit}" + (
        f" plus uncommitted changes in {', '.join(dirty)}" if dirty else ""
    )


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


@dataclass(frozen=True)
class Target:
    """A goal from the issue and whether this run met it."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class Section:
    """One benchmark's part of RESULTS.md."""

    title: str
    lines: list[str] = field(default_factory=list)
    headline: list[tuple[str, str]] = field(default_factory=list)  # (figure, value)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0
    failed: bool = False
    load: str = ""  # the machine's 1-minute load average at the section's start and end

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        for line in lines:
            print(line, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- memory of another process, from /proc ---------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    """A ``Vm*`` figure of ``/proc/<pid>/status`` in KiB (VmHWM: peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def write_section(results: Path, heading: str, text: str) -> None:
    """Put ``text`` (starting with ``heading``) in ``results`` in place of the section under
    that heading, or at the end: a one-off benchmark updates its own part of RESULTS.md."""
    current = results.read_text() if results.exists() else ""
    before, found, after = current.partition(heading)
    rest = after[after.find("\n## ") + 1 :] if found and "\n## " in after else ""
    results.write_text(before.rstrip("\n") + "\n\n" + text + ("\n" + rest if rest else ""))
