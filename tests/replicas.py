"""Several ``flightsrv run`` processes with one spicepod over one PostgreSQL database, as a
deployment runs them: which one syncs, killing it, waiting for another to take over."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.runtime_process import RuntimeProcess


class Replicas:
    """Runtimes serving ``dataset`` (a :func:`tests.runtime_process.dataset_entry`), each in
    a directory of its own under ``workdir``, with ``runtime`` as the spicepod's runtime block.
    """

    def __init__(
        self,
        workdir: Path,
        dataset: dict[str, Any],
        runtime: dict[str, Any],
        args: tuple[str, ...] = (),
    ) -> None:
        self._workdir = workdir
        self._dataset = dataset
        self._runtime = runtime
        self._args = args
        self._started = 0
        self.live: list[RuntimeProcess] = []

    def start(self) -> RuntimeProcess:
        self._started += 1
        workdir = self._workdir / f"runtime{self._started}"
        workdir.mkdir()
        runtime = RuntimeProcess(workdir, [self._dataset], runtime=self._runtime, args=self._args)
        self.live.append(runtime.start())
        return runtime

    def kill(self, runtime: RuntimeProcess) -> None:
        runtime.kill()
        self.live.remove(runtime)

    def close(self) -> None:
        for runtime in self.live:
            runtime.kill()
        self.live.clear()

    @staticmethod
    def status(runtime: RuntimeProcess) -> dict[str, Any] | None:
        """The dataset's entry of ``/v1/datasets``, or None while the runtime does not answer."""
        try:
            code, body = runtime.get("/v1/datasets")
        except OSError:
            return None
        return dict(json.loads(body)[0]) if code == 200 else None

    def syncing(self) -> list[tuple[RuntimeProcess, dict[str, Any]]]:
        """The live runtimes that say they sync the dataset, with their status."""
        found = []
        for runtime in self.live:
            status = self.status(runtime)
            if status is not None and status["role"] == "syncing":
                found.append((runtime, status))
        return found

    def wait_commit(self, after: float, timeout: float) -> tuple[RuntimeProcess, float]:
        """The runtime that syncs the dataset and has committed since ``after`` (epoch
        seconds), and when it did; fails if two say they sync it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            syncing = self.syncing()
            assert len(syncing) <= 1, [s for _, s in syncing]
            if syncing and (syncing[0][1]["last_checkpoint_at"] or 0) > after:
                return syncing[0][0], float(syncing[0][1]["last_checkpoint_at"])
            time.sleep(0.05)
        raise AssertionError(
            f"no runtime committed within {timeout} s: {[self.status(r) for r in self.live]}"
        )
