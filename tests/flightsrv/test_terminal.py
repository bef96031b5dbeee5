"""People at the terminal: live bootstrap bars in a pseudo-terminal, JSON log lines."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dynamo import Emulator, create_table, random_item
from tests.runtime_process import dataset_entry, free_port
from tests.streamfaults import StreamFaultProxy


def spicepod(tmp_path: Path, dataset: dict[str, Any]) -> Path:
    path = tmp_path / "spicepod.yaml"
    path.write_text(yaml.safe_dump({"version": "v1", "kind": "Spicepod", "datasets": [dataset]}))
    return path


def run_args(config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flightsrv",
        "run",
        "--config",
        str(config),
        "--flight",
        f"127.0.0.1:{free_port()}",
        "--http",
        f"127.0.0.1:{free_port()}",
        "--metrics",
        f"127.0.0.1:{free_port()}",
        *extra,
    ]


@pytest.mark.slow  # a bootstrap watched on a terminal
def test_live_progress_bars_in_a_pseudo_terminal(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(1)
    for i in range(300):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    with StreamFaultProxy(emulator.url) as proxy:
        proxy.set_fault_rates("Scan", latency=1.0, latency_seconds=1.5)  # a slow scan
        config = spicepod(tmp_path, dataset_entry("orders", table_name, proxy.url, mode="memory"))
        controller, terminal = pty.openpty()
        proc = subprocess.Popen(
            run_args(config), stdin=terminal, stdout=terminal, stderr=terminal, cwd=tmp_path
        )
        os.close(terminal)
        output = b""
        deadline = time.monotonic() + 30
        try:
            while b"is Ready" not in output and time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 0.5)
                if ready:
                    output += os.read(controller, 65536)
        finally:
            proc.terminate()
            proc.wait(10)
            os.close(controller)
    text = output.decode(errors="replace")
    assert "is Ready" in text, text[-2000:]
    bars = [
        line for line in text.splitlines() if line.lstrip("\x1b[0123456789FJ").startswith("orders")
    ]
    assert bars, f"no progress bar was drawn:\n{text[-2000:]}"
    assert "[" in bars[0] and "items" in bars[0] and "ETA" in bars[0]
    assert "\x1b[" in text, "bars are redrawn in place with cursor movements"


@pytest.mark.slow  # a runtime process
def test_json_log_lines(emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path) -> None:
    create_table(ddb, table_name)
    config = spicepod(tmp_path, dataset_entry("orders", table_name, emulator.url, mode="memory"))
    proc = subprocess.Popen(
        run_args(config, "--log-format", "json"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=tmp_path,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "is Ready" in line:
                break
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=10)[1]
    lines += rest.splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"] == "sync.pipeline" and "is Ready" in e["message"] for e in entries)
    assert proc.returncode == 0
