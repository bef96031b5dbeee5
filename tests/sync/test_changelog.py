"""The change log kept while a load runs: whole rounds only, found again after a restart, and
positioned by the checkpoint the table holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sync.changes import Checkpoint, ShardPosition
from sync.dynamodb.changelog import ChangeLog
from sync.dynamodb.rawparse import parse_get_records
from sync.dynamodb.stream import Poll

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
CAPTURED = Checkpoint(
    ARN, (ShardPosition(ARN, "shard-1", None, "100"),), datetime(2026, 1, 1, tzinfo=UTC)
)


def page(*keys: str, created: float = 1_767_225_600.0) -> bytes:
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": k}},
                "NewImage": {"pk": {"S": k}, "n": {"N": str(i)}},
                "SequenceNumber": str(200 + i),
                "ApproximateCreationDateTime": created + i,
            },
        }
        for i, k in enumerate(keys)
    ]
    return json.dumps({"Records": records, "NextShardIterator": "it"}).encode()


def poll(sequence: str, *bodies: bytes, drained: bool = False) -> Poll:
    positions = (ShardPosition(ARN, "shard-1", None, sequence, drained),)
    return Poll(ARN, 0.0, [parse_get_records(b) for b in bodies], positions=positions)


def keys_of(log: ChangeLog) -> list[list[str]]:
    out = []
    for logged in log.rounds:
        keys = []
        for p in log.pages(logged):
            assert p.records is not None
            keys += [r["dynamodb"]["Keys"]["pk"]["S"] for r in p.records.to_pylist()]
        out.append(keys)
    return out


def test_rounds_are_found_again_with_their_pages_and_positions(tmp_path: Path) -> None:
    directory = tmp_path / "t.changelog"
    log = ChangeLog.open(directory, CAPTURED)
    log.append(poll("201", page("a", "b")))
    log.append(poll("202", page("c"), page("d", "e")))
    log.append(poll("202", drained=True))  # a shard drained: no records, a new position

    found = ChangeLog.find(directory)
    assert found is not None
    assert keys_of(found) == [["a", "b"], ["c", "d", "e"], []]
    assert [r.records for r in found.rounds] == [2, 3, 0]
    assert found.last().shards == (ShardPosition(ARN, "shard-1", None, "202", True),)
    assert found.last().watermark == datetime.fromtimestamp(1_767_225_601.0, UTC)


def test_a_round_counts_once_its_manifest_is_written(tmp_path: Path) -> None:
    directory = tmp_path / "t.changelog"
    log = ChangeLog.open(directory, CAPTURED)
    log.append(poll("201", page("a")))
    log.append(poll("202", page("b")))
    (directory / "00000002.json").unlink()  # as if killed before the manifest was renamed in
    (directory / "00000003-0000.arrow.tmp").write_bytes(b"half a page")

    found = ChangeLog.find(directory)
    assert found is not None
    assert keys_of(found) == [["a"]]
    assert sorted(p.name for p in directory.iterdir()) == [
        "00000001-0000.arrow",
        "00000001.json",
        "captured.json",
    ]
    found.append(poll("203", page("c")))  # numbering goes on after the last whole round
    assert keys_of(ChangeLog.find(directory) or found) == [["a"], ["c"]]


def test_the_rounds_after_a_checkpoint_and_a_new_capture_starting_afresh(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "t.changelog"
    log = ChangeLog.open(directory, CAPTURED)
    for sequence, key in (("201", "a"), ("202", "b"), ("203", "c")):
        log.append(poll(sequence, page(key)))
    after_b = Checkpoint(ARN, (ShardPosition(ARN, "shard-1", None, "202"),))

    assert [r.number for r in log.after(CAPTURED) or []] == [1, 2, 3]
    assert [r.number for r in log.after(after_b) or []] == [3]
    later = Checkpoint(ARN, (ShardPosition(ARN, "shard-1", None, "999"),))
    assert log.after(later) is None  # not a position of this log

    # The same capture (as read back from the engine) reopens the log; another capture starts
    # a new one, even at the same positions (a shard captured at its tip has no sequence
    # number): its time tells them apart.
    stored = Checkpoint(
        ARN, CAPTURED.shards, datetime.fromtimestamp(CAPTURED.watermark.timestamp(), UTC)
    )
    again = ChangeLog.open(directory, stored)
    assert len(again.rounds) == 3
    tip = (ShardPosition(ARN, "shard-1", None, None),)
    at_tip = ChangeLog.open(directory, Checkpoint(ARN, tip, datetime(2026, 1, 1, tzinfo=UTC)))
    at_tip.append(poll("201", page("a")))
    later_capture = Checkpoint(ARN, tip, datetime(2026, 1, 2, tzinfo=UTC))
    assert ChangeLog.open(directory, later_capture).rounds == []
    other = Checkpoint(ARN, (ShardPosition(ARN, "shard-1", None, "500"),))
    fresh = ChangeLog.open(directory, other)
    assert fresh.rounds == [] and fresh.last() == other
    assert ChangeLog.find(directory) is not None
    fresh.remove()
    assert ChangeLog.find(directory) is None and not directory.exists()
