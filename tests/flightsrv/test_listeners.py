"""A busy listening address stops ``flightsrv run`` with one line naming the address and the
flag that moves it, exit status 2, before any engine is opened."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flightsrv.config import parse_config
from flightsrv.runtime import Endpoints, Runtime
from tests.flightsrv.test_config import pod
from tests.runtime_process import free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("flag", ["--flight", "--http", "--metrics"])
def test_busy_port_is_one_line_naming_address_and_flag(
    tmp_path: Path, busy_port: int, flag: str
) -> None:
    config = tmp_path / "spicepod.yaml"
    config.write_text(yaml.safe_dump(pod()))
    addresses = {f: f"127.0.0.1:{free_port()}" for f in ("--flight", "--http", "--metrics")}
    addresses[flag] = f"127.0.0.1:{busy_port}"
    result = subprocess.run(
        [sys.executable, "-m", "flightsrv", "run", "--config", str(config)]
        + [arg for pair in addresses.items() for arg in pair],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{busy_port}" in result.stderr and flag in result.stderr
    assert "address already in use" in result.stderr
    assert not (tmp_path / "data").exists(), "no engine may be opened"


def test_busy_default_metrics_port_serves_without_metrics(tmp_path: Path, busy_port: int) -> None:
    doc = pod()
    doc["datasets"] = []
    config = parse_config(doc, tmp_path / "spicepod.yaml")
    endpoints = Endpoints(
        ("127.0.0.1", 0), ("127.0.0.1", 0), ("127.0.0.1", busy_port), metrics_optional=True
    )
    runtime = Runtime(config, endpoints)
    try:
        assert runtime.metrics_server is None
    finally:
        runtime.start()
        runtime.stop()
