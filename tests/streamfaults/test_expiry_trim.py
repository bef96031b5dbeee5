"""Iterator expiry and retention trimming, in seconds instead of AWS's minutes and hours."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .helpers import list_shards, new_table, put, read_shard, stream_arn
from .proxy import StreamFaultProxy


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _iterator(streams: Any, arn: str, shard_id: str, kind: str, seq: str | None = None) -> str:
    kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard_id, "ShardIteratorType": kind}
    if seq is not None:
        kwargs["SequenceNumber"] = seq
    return str(streams.get_shard_iterator(**kwargs)["ShardIterator"])


def test_iterators_expire_after_the_configured_age(
    proxy: StreamFaultProxy, dynamodb: Any, streams_no_retry: Any
) -> None:
    proxy.configure(iterator_ttl=0.5)
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    arn = stream_arn(dynamodb, table)
    shard_id = list_shards(streams_no_retry, arn)[0]["ShardId"]
    it = _iterator(streams_no_retry, arn, shard_id, "TRIM_HORIZON")
    page = streams_no_retry.get_records(ShardIterator=it)
    assert len(page["Records"]) == 1
    time.sleep(0.7)
    for stale in (it, page["NextShardIterator"]):
        with pytest.raises(ClientError) as err:
            streams_no_retry.get_records(ShardIterator=stale)
        assert _code(err) == "ExpiredIteratorException"
    assert proxy.fault_counts["expired_iterator"] == 2
    seq = page["Records"][0]["dynamodb"]["SequenceNumber"]
    fresh = _iterator(streams_no_retry, arn, shard_id, "AFTER_SEQUENCE_NUMBER", seq)
    assert streams_no_retry.get_records(ShardIterator=fresh)["Records"] == []


def test_trimmed_records_are_gone_and_reading_them_fails(
    proxy: StreamFaultProxy, dynamodb: Any, streams_no_retry: Any
) -> None:
    streams = streams_no_retry
    proxy.configure(retention=1.0)
    table = new_table(dynamodb)
    for i in range(3):
        put(dynamodb, table, f"old{i}", i)
    arn = stream_arn(dynamodb, table)
    shard_id = list_shards(streams, arn)[0]["ShardId"]
    old_it = _iterator(streams, arn, shard_id, "TRIM_HORIZON")
    first = streams.get_records(ShardIterator=old_it, Limit=1)["Records"][0]
    first_seq = first["dynamodb"]["SequenceNumber"]
    time.sleep(1.2)
    put(dynamodb, table, "new0", 10)
    put(dynamodb, table, "new1", 11)

    with pytest.raises(ClientError) as err:
        streams.get_records(ShardIterator=old_it)
    assert _code(err) == "TrimmedDataAccessException"
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        with pytest.raises(ClientError) as err:
            _iterator(streams, arn, shard_id, kind, first_seq)
        assert _code(err) == "TrimmedDataAccessException"
    horizon = _iterator(streams, arn, shard_id, "TRIM_HORIZON")
    keys = [
        r["dynamodb"]["Keys"]["pk"]["S"]
        for r in streams.get_records(ShardIterator=horizon)["Records"]
    ]
    assert keys == ["new0", "new1"]
    assert proxy.fault_counts["trimmed_data_access"] == 1


def test_closed_fully_trimmed_shards_leave_describe_stream(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    proxy.configure(retention=1.0)
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    arn = stream_arn(dynamodb, table)
    root = list_shards(streams, arn)[0]["ShardId"]
    [child] = proxy.split(table, children=1)
    put(dynamodb, table, "a", 2)
    assert {s["ShardId"] for s in list_shards(streams, arn)} == {root, child}
    time.sleep(1.2)
    [listed] = list_shards(streams, arn)
    assert listed["ShardId"] == child and listed["ParentShardId"] == root
    with pytest.raises(ClientError) as err:
        _iterator(streams, arn, root, "TRIM_HORIZON")
    assert _code(err) == "ResourceNotFoundException"
    records, closed = read_shard(streams, arn, child)  # trimmed too, but the shard is open
    assert records == [] and not closed
