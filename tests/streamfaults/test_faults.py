"""Injected faults surface as the botocore errors AWS would produce, at the configured rates,
and are counted."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError

from .helpers import client, list_shards, new_table, put, stream_arn
from .proxy import StreamFaultProxy


def _open_iterator(streams: Any, arn: str) -> str:
    shard_id = list_shards(streams, arn)[0]["ShardId"]
    return str(
        streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    )


def test_error_rates_match_botocore_codes_and_counters(
    proxy: StreamFaultProxy, dynamodb: Any, streams_no_retry: Any
) -> None:
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    arn = stream_arn(dynamodb, table)
    it = _open_iterator(streams_no_retry, arn)
    proxy.set_fault_rates(
        "GetRecords", throttling=0.2, limit_exceeded=0.1, http_500=0.1, http_503=0.1
    )
    seen: Counter[str] = Counter()
    statuses: dict[str, int] = {}
    calls = 300
    for _ in range(calls):
        try:
            assert len(streams_no_retry.get_records(ShardIterator=it)["Records"]) == 1
            seen["ok"] += 1
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            seen[code] += 1
            statuses[code] = exc.response["ResponseMetadata"]["HTTPStatusCode"]
    counts = proxy.fault_counts
    assert seen["ThrottlingException"] == counts["throttling"]
    assert seen["LimitExceededException"] == counts["limit_exceeded"]
    assert seen["InternalServerError"] == counts["http_500"]
    assert seen["ServiceUnavailable"] == counts["http_503"]
    assert sum(seen.values()) == calls
    assert statuses == {
        "ThrottlingException": 400,
        "LimitExceededException": 400,
        "InternalServerError": 500,
        "ServiceUnavailable": 503,
    }
    for code, rate in [("ThrottlingException", 0.2), ("LimitExceededException", 0.1)]:
        assert abs(seen[code] - rate * calls) < 4 * (rate * calls) ** 0.5, seen
    assert abs(seen["ok"] - 0.5 * calls) < 4 * (0.25 * calls) ** 0.5, seen
    # Rates are per operation: other calls pass.
    assert list_shards(streams_no_retry, arn)


def test_same_seed_same_faults(emulator_url: str) -> None:
    def run(seed: int) -> list[str]:
        with StreamFaultProxy(emulator_url, seed=seed) as p:
            c = client("dynamodbstreams", p.url, attempts=1)
            p.set_fault_rates(throttling=0.5)
            out = []
            for _ in range(20):
                try:
                    c.list_streams()
                    out.append("ok")
                except ClientError as exc:
                    out.append(exc.response["Error"]["Code"])
            c.close()
            return out

    assert run(7) == run(7)
    assert "ok" in run(7) and "ThrottlingException" in run(7)


def test_connection_reset_and_latency(
    proxy: StreamFaultProxy, dynamodb: Any, streams_no_retry: Any
) -> None:
    table = new_table(dynamodb)
    arn = stream_arn(dynamodb, table)
    proxy.set_fault_rates("DescribeStream", reset=1.0)
    with pytest.raises((ConnectionClosedError, HTTPClientError)):
        streams_no_retry.describe_stream(StreamArn=arn)
    assert proxy.fault_counts["reset"] == 1

    proxy.clear_faults()
    proxy.set_fault_rates("DescribeStream", latency=1.0, latency_seconds=0.3)
    start = time.monotonic()
    assert streams_no_retry.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert time.monotonic() - start >= 0.3
    assert proxy.fault_counts["latency"] == 1


def test_empty_pages_before_records(proxy: StreamFaultProxy, dynamodb: Any, streams: Any) -> None:
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    arn = stream_arn(dynamodb, table)
    proxy.configure(empty_pages=3)
    it = _open_iterator(streams, arn)
    pages = []
    for _ in range(4):
        page = streams.get_records(ShardIterator=it)
        pages.append(len(page["Records"]))
        it = page["NextShardIterator"]
    assert pages == [0, 0, 0, 1]
    assert proxy.fault_counts["empty_page"] == 3

    proxy.configure(empty_pages=0)
    proxy.set_fault_rates("GetRecords", empty_page=0.5)
    it = _open_iterator(streams, arn)
    empties = 0
    while True:
        page = streams.get_records(ShardIterator=it)
        it = page["NextShardIterator"]
        if page["Records"]:
            break
        empties += 1
    assert proxy.fault_counts["empty_page"] == 3 + empties


def test_forced_permanent_errors(
    proxy: StreamFaultProxy, dynamodb: Any, streams_no_retry: Any
) -> None:
    table, other = new_table(dynamodb), new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    put(dynamodb, other, "a", 1)
    arn, other_arn = stream_arn(dynamodb, table), stream_arn(dynamodb, other)
    it, other_it = (
        _open_iterator(streams_no_retry, arn),
        _open_iterator(streams_no_retry, other_arn),
    )

    proxy.force_error("GetRecords", "AccessDeniedException", table=table)
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            streams_no_retry.get_records(ShardIterator=it)
        assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert streams_no_retry.get_records(ShardIterator=other_it)["Records"]

    proxy.clear_faults()
    proxy.force_error("DescribeStream", "ResourceNotFoundException", times=1)
    with pytest.raises(ClientError) as err:
        streams_no_retry.describe_stream(StreamArn=arn)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert streams_no_retry.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert streams_no_retry.get_records(ShardIterator=it)["Records"]
    assert proxy.fault_counts["forced:AccessDeniedException"] == 2
    assert proxy.fault_counts["forced:ResourceNotFoundException"] == 1


def test_table_operations_get_faults_only_when_named(
    proxy: StreamFaultProxy, dynamodb: Any
) -> None:
    table = new_table(dynamodb)
    proxy.set_fault_rates(throttling=1.0)  # every streams operation, no table operation
    put(dynamodb, table, "a", 1)
    no_retry = client("dynamodb", proxy.url, attempts=1)
    proxy.set_fault_rates("Scan", throughput_exceeded=1.0)
    with pytest.raises(ClientError) as err:
        no_retry.scan(TableName=table)
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert no_retry.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]
    no_retry.close()
