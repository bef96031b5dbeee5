"""What people at a terminal see: log formats, and a live bootstrap progress display."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from sync.pipeline import DatasetSync
from sync.status import SCANNING

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REFRESH_S = 0.25


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ProgressDisplay(logging.Handler):
    """Live bootstrap bars, one line per bootstrapping dataset, at the bottom of a terminal.

    It is also the log handler, so that log lines print above the bars instead of through
    them: each record clears the bars, prints, and the next refresh draws them again.
    """

    def __init__(self, datasets: Sequence[DatasetSync], stream: TextIO = sys.stderr) -> None:
        super().__init__()
        self._datasets = datasets
        self._stream = stream
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            self._clear()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._lock:
            self._clear()
            self._stream.write(text + "\n")
            self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_S):
            lines = [self._bar(d) for d in self._datasets]
            with self._lock:
                self._clear()
                drawn = [line for line in lines if line]
                for line in drawn:
                    self._stream.write(line + "\n")
                self._drawn = len(drawn)
                self._stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            # Up to the first bar line, then erase to the end of the screen.
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    @staticmethod
    def _bar(dataset: DatasetSync) -> str | None:
        status = dataset.status()
        progress = status.bootstrap
        if status.state not in SCANNING or progress is None:
            return None
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 60))
        filled = int(width * progress.percent / 100)
        eta = f"{progress.eta_s:.0f}s" if progress.eta_s is not None else "-"
        return (
            f"{status.name:<16} [{'#' * filled}{'.' * (width - filled)}] "
            f"{progress.percent:5.1f}%  {progress.items:,}/{progress.expected:,} items  "
            f"{progress.rate_per_s:,.0f}/s  ETA {eta}"
        )


def configure_logging(level: str, log_format: str) -> None:
    """Plain or JSON log lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def attach_progress(datasets: Sequence[DatasetSync], log_format: str) -> ProgressDisplay | None:
    """Replace the stderr log handler by a live progress display when stderr is a terminal
    (and logs are plain text); otherwise the pipeline's periodic progress lines suffice."""
    if log_format != "plain" or not sys.stderr.isatty():
        return None
    display = ProgressDisplay(datasets)
    display.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(display)
    display.start()
    return display
