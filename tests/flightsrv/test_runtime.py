"""The runtime in-process: a construction that fails half-way closes what it had opened."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from flightsrv.config import parse_config
from flightsrv.runtime import Endpoints, Runtime
from tests.flightsrv.test_config import pod
from tests.runtime_process import free_port
from tests.sync.test_fleet import held_open


def bindable(port: int) -> bool:
    """Whether a plain listener (no ``SO_REUSEPORT``) can take ``port`` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("failure", ["http port taken by flight", "unknown compression"])
def test_a_runtime_failing_half_way_leaves_no_engine_port_or_thread_open(
    tmp_path: Path, failure: str
) -> None:
    config = parse_config(pod(), tmp_path / "spicepod.yaml")
    data = tmp_path / "data"
    flight_port = free_port()
    # The listeners are checked one by one before anything opens, so both pass; then Flight
    # takes the port and the HTTP server cannot bind it, after the engines were opened.
    http_port = flight_port if failure == "http port taken by flight" else free_port()
    metrics_port = free_port()  # its server is built, not started, when HTTP fails
    endpoints = Endpoints(
        ("127.0.0.1", flight_port), ("127.0.0.1", http_port), ("127.0.0.1", metrics_port)
    )
    compression = "gzip" if failure == "unknown compression" else "none"
    threads = set(threading.enumerate())
    # ``caught`` keeps the traceback, and with it the half-built runtime, alive as a caller
    # reporting the error would: what is released must be closed, not merely collected.
    with pytest.raises(OSError if failure == "http port taken by flight" else ValueError) as caught:
        Runtime(config, endpoints, compression)
    assert caught.traceback
    assert (data / "orders.duckdb").exists(), "the engine was opened before the failure"
    assert not held_open(data)
    assert bindable(flight_port), "the Flight server still listens"
    assert bindable(metrics_port), "the metrics server still listens"
    assert set(threading.enumerate()) <= threads


def test_a_runtime_stopped_after_start_leaves_nothing_open(tmp_path: Path) -> None:
    config = parse_config(pod(), tmp_path / "spicepod.yaml")
    endpoints = Endpoints(("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
    threads = set(threading.enumerate())
    runtime = Runtime(config, endpoints)
    assert held_open(tmp_path / "data"), "the probe sees an open engine"
    runtime.start()
    runtime.stop()
    assert not held_open(tmp_path / "data")
    assert bindable(endpoints.flight[1]) and bindable(endpoints.http[1])
    assert not [t for t in set(threading.enumerate()) - threads if t.is_alive()]
