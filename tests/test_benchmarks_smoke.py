"""The benchmark suite at a tiny size, as a smoke check that every section still runs.

A benchmark is not a timed test: no figure is asserted here, only that each section measured
something and the command succeeded (it exits 1 when a section fails).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every benchmark at a tiny scale

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_run_at_a_tiny_scale(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--scale", "0.01", "--runs", "1", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "records/s" in result.stdout or "items/s" in result.stdout


# One-off benchmarks (each a section of RESULTS.md of its own): arguments for a tiny size,
# and what their report must show.
ONE_OFF = {
    "cayenne": (
        ["--rows", "3000", "--batches", "2", "--changes", "200", "--lookups", "3", "--no-write"],
        ["point lookup p50 ms (compacted)", "point lookup p50 ms (ADBC)"],
    ),
    "resume": (["--scale", "0.02", "--segments", "2"], ["read again"]),
    "export_replay": (
        ["--items", "3000", "--runs", "1", "--rss-items", "2000", "4000", "--no-write"],
        ["| sqlite |", "| 4,000 |"],
    ),
    "indexes": (["--rows", "3000", "--lookups", "3", "--no-write"], ["| postgres |", "| sqlite |"]),
    "failover": (["--kills", "1", "--lease-timeout", "2s", "--no-write"], ["failover p50"]),
    "workers": (
        ["--rows", "300", "--seconds", "1", "--clients", "2", "--workers", "1", "2"]
        + ["--engines", "sqlite", "--no-write"],
        ["| sqlite | scan-heavy | 2 |"],
    ),
}


@pytest.mark.parametrize("name", sorted(ONE_OFF))
def test_each_one_off_benchmark_runs_at_a_tiny_size(name: str) -> None:
    args, shown = ONE_OFF[name]
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for text in shown:
        assert text in result.stdout, text
