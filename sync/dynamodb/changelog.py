"""The stream's records kept on disk while a long initial load runs.

A stream keeps its records 24 hours; a load of a large table can take longer, and the
changes made while it runs are replayed from the position captured before it. So while the
load runs, the stream is read on and each poll round is written here: its GetRecords pages as
Arrow IPC files, then a small JSON manifest with the shard positions after the round. The
manifest, written last and renamed into place, is what makes a round count; pages without one
are an interrupted write, deleted on open. After the swap-in the rounds are replayed from
these files (records that may have left the stream long ago), then the stream goes on from
the last logged position, and the directory is removed.

The log belongs to one captured position (``captured.json``): a load started afresh (a new
capture) starts a new log.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from sync.changes import Checkpoint, ShardPosition
from sync.dynamodb.rawparse import RecordsPage
from sync.dynamodb.records import newest_created
from sync.dynamodb.stream import Poll

CAPTURED = "captured.json"
PAGE_SUFFIX = ".arrow"
MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class LoggedRound:
    """One poll round as logged: its number, pages (read on demand) and what the poll said."""

    number: int
    pages: int
    records: int
    positions: tuple[ShardPosition, ...]
    started: float
    newest: float | None  # the newest record's ApproximateCreationDateTime, if any


def _encode(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "stream_arn": checkpoint.stream_arn,
        "shards": [asdict(s) for s in checkpoint.shards],
        "watermark": checkpoint.watermark.timestamp() if checkpoint.watermark else None,
    }


def _positions(shards: list[dict[str, Any]]) -> tuple[ShardPosition, ...]:
    return tuple(ShardPosition(**s) for s in shards)


def same_capture(a: Checkpoint, b: Checkpoint) -> bool:
    """Whether two checkpoints are the same captured position: the same shards and the same
    capture time (its watermark). The positions alone do not tell two captures apart: an open
    shard captured at its tip has no sequence number yet."""
    if a.stream_arn != b.stream_arn or set(a.shards) != set(b.shards):
        return False
    if a.watermark is None or b.watermark is None:
        return a.watermark is b.watermark
    return abs((a.watermark - b.watermark).total_seconds()) < 0.001


class ChangeLog:
    """The rounds logged in ``directory`` since ``captured``."""

    def __init__(self, directory: Path, captured: Checkpoint) -> None:
        self.directory = directory
        self.captured = captured
        self._rounds: list[LoggedRound] = []

    @classmethod
    def open(cls, directory: Path, captured: Checkpoint) -> ChangeLog:
        """The log of ``captured`` in ``directory``: its rounds if it holds that capture's
        log, else a new, empty one (an earlier capture's log is deleted)."""
        existing = cls.find(directory)
        if existing is not None and same_capture(existing.captured, captured):
            return existing
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        log = cls(directory, captured)
        _write_atomically(directory / CAPTURED, json.dumps(_encode(captured)).encode())
        return log

    @classmethod
    def find(cls, directory: Path) -> ChangeLog | None:
        """The log in ``directory`` with its committed rounds; None if there is none. Pages
        of a round whose manifest was never written are deleted."""
        try:
            captured = json.loads((directory / CAPTURED).read_text())
        except (OSError, ValueError):
            return None
        watermark = captured["watermark"]
        log = cls(
            directory,
            Checkpoint(
                captured["stream_arn"],
                _positions(captured["shards"]),
                datetime.fromtimestamp(watermark, UTC) if watermark is not None else None,
            ),
        )
        numbers = set()
        for path in directory.glob(f"*{MANIFEST_SUFFIX}"):
            if path.name != CAPTURED:
                manifest = json.loads(path.read_text())
                log._rounds.append(
                    LoggedRound(
                        manifest["number"],
                        manifest["pages"],
                        manifest["records"],
                        _positions(manifest["positions"]),
                        manifest["started"],
                        manifest["newest"],
                    )
                )
                numbers.add(manifest["number"])
        log._rounds.sort(key=lambda r: r.number)
        for path in directory.glob("*.tmp"):
            path.unlink(missing_ok=True)
        for path in directory.glob(f"*{PAGE_SUFFIX}"):
            if int(path.name.split("-")[0]) not in numbers:
                path.unlink(missing_ok=True)
        return log

    @property
    def rounds(self) -> list[LoggedRound]:
        return list(self._rounds)

    @property
    def records(self) -> int:
        return sum(r.records for r in self._rounds)

    def last(self) -> Checkpoint:
        """Where the stream goes on from: after the last logged round, or the capture."""
        if not self._rounds:
            return self.captured
        newest = max((r.newest for r in self._rounds if r.newest is not None), default=None)
        watermark = datetime.fromtimestamp(newest, UTC) if newest is not None else None
        return Checkpoint(
            self.captured.stream_arn,
            self._rounds[-1].positions,
            watermark or self.captured.watermark,
        )

    def after(self, checkpoint: Checkpoint) -> list[LoggedRound] | None:
        """The rounds after the one ``checkpoint`` ends (all of them after the capture);
        None if ``checkpoint`` is not a position of this log."""
        if same_capture(checkpoint, self.captured):
            return self.rounds
        for i, round_ in enumerate(self._rounds):
            if set(round_.positions) == set(checkpoint.shards):
                return self._rounds[i + 1 :]
        return None

    def append(self, poll: Poll) -> None:
        """Log ``poll``: its pages first, then its manifest (the round counts from then on)."""
        number = self._rounds[-1].number + 1 if self._rounds else 1
        pages = [p for p in poll.pages if p.records is not None and p.count]
        created = [newest_created(p.records) for p in pages if p.records is not None]
        newest = max((c for c in created if c is not None), default=None)
        for i, page in enumerate(pages):
            assert page.records is not None
            table = pa.Table.from_arrays([page.records], names=["r"])
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            _write_atomically(self._page(number, i), sink.getvalue().to_pybytes())
        round_ = LoggedRound(number, len(pages), poll.records, poll.positions, poll.started, newest)
        manifest = {**asdict(round_), "positions": [asdict(s) for s in poll.positions]}
        _write_atomically(
            self.directory / f"{number:08d}{MANIFEST_SUFFIX}", json.dumps(manifest).encode()
        )
        self._rounds.append(round_)

    def pages(self, round_: LoggedRound) -> Iterator[RecordsPage]:
        """The GetRecords pages of ``round_``, as read from the stream."""
        for i in range(round_.pages):
            data = pa.BufferReader(self._page(round_.number, i).read_bytes())
            records = pa.ipc.open_file(data).read_all().column("r").combine_chunks()
            yield RecordsPage(records, None)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _page(self, number: int, index: int) -> Path:
        return self.directory / f"{number:08d}-{index:04d}{PAGE_SUFFIX}"


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, durable before the name appears (a crash leaves it or nothing)."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
