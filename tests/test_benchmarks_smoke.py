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


def test_the_cayenne_benchmark_runs_at_a_tiny_size() -> None:
    tiny = ["--rows", "3000", "--batches", "2", "--changes", "200", "--lookups", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cayenne", *tiny, "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "point lookup p50 ms (compacted)" in result.stdout
    assert "point lookup p50 ms (ADBC)" in result.stdout


def test_the_resume_benchmark_runs_at_a_tiny_size() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.resume", "--scale", "0.02", "--segments", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "read again" in result.stdout


def test_the_export_replay_benchmark_runs_at_a_tiny_size() -> None:
    tiny = ["--items", "3000", "--runs", "1", "--rss-items", "2000", "4000", "--no-write"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.export_replay", *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| sqlite |" in result.stdout and "| 4,000 |" in result.stdout


def test_the_indexes_benchmark_runs_at_a_tiny_size() -> None:
    tiny = ["--rows", "3000", "--lookups", "3", "--no-write"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.indexes", *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| postgres |" in result.stdout and "| sqlite |" in result.stdout
