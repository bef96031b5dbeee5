"""Run ``flightsrv run`` as a subprocess on free ports, as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sync.accelerators import engine_spec
from tests.dynamo import CREDENTIALS, REGION


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dataset_entry(
    name: str,
    table: str,
    endpoint: str,
    engine: str = "duckdb",
    mode: str = "file",
    pg_connection: dict[str, str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    if engine == "postgres":
        import psycopg

        assert pg_connection is not None, "engine postgres needs the pg_connection fixture"
        accel_params = {"pg_connection_string": psycopg.conninfo.make_conninfo(**pg_connection)}
    elif mode == "file":
        file_param = engine_spec(engine).file_param
        assert file_param is not None
        accel_params = {file_param: f"./data/{name}.{engine}"}
    else:
        accel_params = {}
    return {
        "from": f"dynamodb:{table}",
        "name": name,
        "params": {
            "dynamodb_aws_region": REGION,
            "dynamodb_aws_auth": "key",
            "dynamodb_aws_access_key_id": CREDENTIALS["aws_access_key_id"],
            "dynamodb_aws_secret_access_key": CREDENTIALS["aws_secret_access_key"],
            "endpoint_url": endpoint,
            "scan_interval": "50ms",
            **params,
        },
        "acceleration": {
            "enabled": True,
            "engine": engine,
            "mode": mode,
            "refresh_mode": "changes",
            "params": accel_params,
        },
    }


class RuntimeProcess:
    """``python -m flightsrv run`` with a spicepod written to ``workdir``.

    ``runtime`` is the spicepod's ``runtime:`` section, ``args`` more command-line arguments,
    ``env`` more environment variables; ``api_key`` is sent on HTTP requests.
    """

    def __init__(
        self,
        workdir: Path,
        datasets: list[dict[str, Any]],
        *,
        runtime: dict[str, Any] | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        api_key: str | None = None,
        views: list[dict[str, Any]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config = workdir / "spicepod.yaml"
        document: dict[str, Any] = {
            "version": "v1",
            "kind": "Spicepod",
            "name": "t",
            "datasets": datasets,
        }
        if runtime is not None:
            document["runtime"] = runtime
        if views is not None:
            document["views"] = views
        self.config.write_text(yaml.safe_dump(document))
        self.args = list(args)
        self.env = env or {}
        self.api_key = api_key
        self.flight_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.log = workdir / "runtime.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def start(self) -> RuntimeProcess:
        cmd = [
            sys.executable,
            "-m",
            "flightsrv",
            "run",
            "--config",
            str(self.config),
            "--flight",
            f"127.0.0.1:{self.flight_port}",
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--metrics",
            f"127.0.0.1:{self.metrics_port}",
            *self.args,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.workdir, stdout=log, stderr=log, env={**os.environ, **self.env}
            )
        self.wait_http()
        return self

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        request = urllib.request.Request(url, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def datasets(self) -> list[dict[str, Any]]:
        code, body = self.get("/v1/datasets")
        assert code == 200, body
        return list(json.loads(body))

    def wait_http(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"runtime exited early:\n{self.log.read_text()}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"runtime did not start:\n{self.log.read_text()}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/v1/ready")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.datasets()}\n{self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
