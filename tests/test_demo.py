"""The demo: it never waits silently on a busy emulator port, and its spicepod exports the
stream metrics README shows."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from flightsrv.config import DATASET_METRICS, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_demo_stops_at_once_when_its_emulator_port_is_taken() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [str(ROOT / "scripts" / "demo")],
            env={**os.environ, "DEMO_DYNAMODB_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert f"port {port}" in result.stderr and "in use" in result.stderr


def test_demo_spicepod_exports_the_five_stream_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEMO_AWS_ACCESS_KEY_ID", "DEMO_AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "demo")
    monkeypatch.setenv("DEMO_DYNAMODB_ENDPOINT", "http://127.0.0.1:4566")
    config = load_config(ROOT / "spicepod.yaml")
    assert config.metrics == {"orders": frozenset(DATASET_METRICS)}
