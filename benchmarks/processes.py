"""The processes the end-to-end benchmarks start: the DynamoDB emulator (moto in server mode)
and the runtime (``python -m flightsrv run``), each on free loopback ports, as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import yaml

from benchmarks.common import free_port

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def _http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait(proc: subprocess.Popen[bytes], log: Path, ok: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text()[-3000:]}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not up after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class Emulator:
    """``python -m moto.server`` on a free port, in its own process (so that its work does not
    share a GIL with the benchmark's writer and reader threads)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"moto-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait(
            self.proc,
            self.log,
            lambda: _http_get(f"{self.url}/moto-api/")[0] < 500,
            "the emulator",
            30,
        )

    def client(self, service: str = "dynamodb") -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **CREDENTIALS)

    def create_table(self, name: str, key: str = "order_id") -> None:
        """A table keyed on one string attribute, with a NEW_AND_OLD_IMAGES stream."""
        self.client().create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )

    def put_items(self, table: str, items: list[dict[str, Any]]) -> None:
        client = self.client()
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            pending: dict[str, Any] = {table: requests}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def dynamodb_dataset(
    name: str,
    endpoint: str,
    *,
    engine: str = "duckdb",
    mode: str = "file",
    accelerator: dict[str, str] | None = None,
    **params: str,
) -> dict[str, Any]:
    """A spicepod dataset entry mirroring DynamoDB table ``name`` at ``endpoint``;
    ``accelerator``: its ``acceleration.params`` (default: a file named after it)."""
    acceleration: dict[str, Any] = {
        "enabled": True,
        "engine": engine,
        "mode": mode,
        "refresh_mode": "changes",
    }
    if accelerator is not None:
        acceleration["params"] = accelerator
    elif mode == "file":
        acceleration["params"] = {f"{engine}_file": f"./data/{name}.{engine}"}
    return {
        "from": f"dynamodb:{name}",
        "name": name,
        "params": {
            "dynamodb_aws_region": REGION,
            "dynamodb_aws_auth": "key",
            "dynamodb_aws_access_key_id": CREDENTIALS["aws_access_key_id"],
            "dynamodb_aws_secret_access_key": CREDENTIALS["aws_secret_access_key"],
            "endpoint_url": endpoint,
            **params,
        },
        "acceleration": acceleration,
    }


class Runtime:
    """``python -m flightsrv run`` with a spicepod of ``datasets`` written to ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        datasets: list[dict[str, Any]],
        log_level: str = "INFO",
        runtime: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        spicepod: dict[str, Any] = {
            "version": "v1",
            "kind": "Spicepod",
            "name": "bench",
            "datasets": datasets,
        }
        if runtime is not None:
            spicepod["runtime"] = runtime
        config = workdir / "spicepod.yaml"
        config.write_text(yaml.safe_dump(spicepod))
        self.flight_port, self.http_port = free_port(), free_port()
        self.log = workdir / "runtime.log"
        self.started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flightsrv",
                    "run",
                    "--config",
                    str(config),
                    "--flight",
                    f"127.0.0.1:{self.flight_port}",
                    "--http",
                    f"127.0.0.1:{self.http_port}",
                    "--metrics",
                    f"127.0.0.1:{free_port()}",
                    "--log-level",
                    log_level,
                    *args,
                ],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait(self.proc, self.log, lambda: self.get("/health")[0] == 200, "the runtime", 60)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def get(self, path: str) -> tuple[int, str]:
        return _http_get(f"http://127.0.0.1:{self.http_port}{path}")

    def wait_ready(self, timeout: float = 120) -> float:
        """Wait for ``/v1/ready``; returns the seconds since the process was started."""
        _wait(self.proc, self.log, lambda: self.get("/v1/ready")[0] == 200, "readiness", timeout)
        return time.monotonic() - self.started

    def datasets(self) -> list[dict[str, Any]]:
        return list(json.loads(self.get("/v1/datasets")[1]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
