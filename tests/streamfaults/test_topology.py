"""Shard lineage, DescribeStream pagination and stream re-enabling, through plain boto3."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .helpers import list_shards, new_table, put, read_lineage, read_shard, stream_arn
from .proxy import StreamFaultProxy


def test_unconfigured_proxy_is_one_open_shard_like_the_emulator(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    table, other = new_table(dynamodb), new_table(dynamodb)
    for i in range(3):
        put(dynamodb, table, f"k{i}", i)
    put(dynamodb, table, "k0", 10)
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "k0"}})["Item"]["v"] == {"N": "10"}
    assert len(dynamodb.scan(TableName=table)["Items"]) == 3
    arn = stream_arn(dynamodb, table)

    desc = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert desc["StreamStatus"] == "ENABLED" and desc["TableName"] == table
    assert "LastEvaluatedShardId" not in desc
    [shard] = desc["Shards"]
    assert (
        "ParentShardId" not in shard and "EndingSequenceNumber" not in shard["SequenceNumberRange"]
    )
    records, closed = read_shard(streams, arn, shard["ShardId"])
    assert not closed
    assert [r["eventName"] for r in records] == ["INSERT"] * 3 + ["MODIFY"]
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4

    other_shards = list_shards(streams, stream_arn(dynamodb, other))
    assert other_shards[0]["ShardId"] != shard["ShardId"]  # the emulator reuses one id
    assert streams.list_streams(TableName=table)["Streams"][0]["StreamArn"] == arn


def test_get_records_body_is_aws_shaped_json(proxy: StreamFaultProxy, dynamodb: Any) -> None:
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    arn = stream_arn(dynamodb, table)

    def call(op: str, payload: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            proxy.url,
            data=json.dumps(payload).encode(),
            headers={
                "X-Amz-Target": f"DynamoDBStreams_20120810.{op}",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    shard_id = call("DescribeStream", {"StreamArn": arn})["StreamDescription"]["Shards"][0]
    it = call(
        "GetShardIterator",
        {"StreamArn": arn, "ShardId": shard_id["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
    )["ShardIterator"]
    page = call("GetRecords", {"ShardIterator": it})
    [record] = page["Records"]
    assert isinstance(page["NextShardIterator"], str)
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int | float)
    assert isinstance(record["dynamodb"]["SequenceNumber"], str)
    assert record["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "v": {"N": "1"}}


def test_three_generations_read_parents_first_yield_each_record_once_in_key_order(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    table = new_table(dynamodb)
    keys = [f"key-{i}" for i in range(12)]
    written: dict[str, list[int]] = defaultdict(list)
    counter = 0

    def write_round() -> None:
        nonlocal counter
        for key in keys:
            counter += 1
            put(dynamodb, table, key, counter)
            written[key].append(counter)

    write_round()
    gen2 = proxy.split(table, children=2)
    write_round()
    gen3 = proxy.split(table, children=2)
    write_round()
    gen4 = proxy.split(table, children=1)
    write_round()
    assert (len(gen2), len(gen3), len(gen4)) == (2, 4, 4)

    arn = stream_arn(dynamodb, table)
    shards = {s["ShardId"]: s for s in list_shards(streams, arn)}
    assert len(shards) == 11
    assert all(s.get("ParentShardId") in shards for sid, s in shards.items() if sid in gen2 + gen3)
    assert sum("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in shards.values()) == 4
    assert all(sid.startswith("shardId-") and len(sid) == 37 for sid in shards)

    lineage = read_lineage(streams, arn)
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for _, records in lineage for r in records]
    assert len(seqs) == len(set(seqs)) == counter
    seen: dict[str, list[int]] = defaultdict(list)
    for shard_id, records in lineage:
        shard_seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        assert shard_seqs == sorted(shard_seqs), shard_id
        rng = shards[shard_id]["SequenceNumberRange"]
        end = int(rng.get("EndingSequenceNumber", 10**40))
        assert all(int(rng["StartingSequenceNumber"]) <= s <= end for s in shard_seqs)
        for r in records:
            seen[r["dynamodb"]["Keys"]["pk"]["S"]].append(int(r["dynamodb"]["NewImage"]["v"]["N"]))
    assert seen == written

    # Records really spread over the children, and a key only ever moves from a shard into
    # one of its descendants: that is what makes parents-before-children reading ordered.
    def ancestors(shard_id: str) -> set[str]:
        parent = shards[shard_id].get("ParentShardId")
        return {parent} | ancestors(parent) if parent else set()

    holders: dict[str, list[str]] = defaultdict(list)
    placed = sorted(
        (int(r["dynamodb"]["SequenceNumber"]), r["dynamodb"]["Keys"]["pk"]["S"], shard_id)
        for shard_id, records in lineage
        for r in records
    )
    for _, key, shard_id in placed:
        holders[key].append(shard_id)
    for key, path in holders.items():
        assert len(path) == 4, key  # one record per round, one shard per generation
        for older, newer in zip(path, path[1:], strict=False):
            assert older in ancestors(newer), (key, path)
    used = {sid for sid, records in lineage if records}
    assert len(used & set(gen3)) >= 3 and len(used & set(gen4)) >= 3


def test_describe_stream_pages_honour_limit_and_proxy_cap(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    table = new_table(dynamodb)
    put(dynamodb, table, "a", 1)
    proxy.split(table, 2)
    proxy.split(table, 2)
    every = {s["ShardId"] for s in proxy.shards(table)}
    assert len(every) == 7
    arn = stream_arn(dynamodb, table)

    proxy.configure(max_page_size=2)
    desc = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert len(desc["Shards"]) == 2 and desc["LastEvaluatedShardId"] == desc["Shards"][1]["ShardId"]
    assert len(streams.describe_stream(StreamArn=arn, Limit=1)["StreamDescription"]["Shards"]) == 1
    for limit in (None, 1, 3):
        listed = [s["ShardId"] for s in list_shards(streams, arn, limit)]
        assert sorted(listed) == sorted(every), limit

    proxy.configure(describe_order="children_first", max_page_size=3)
    listed = list_shards(streams, arn)
    position = {s["ShardId"]: i for i, s in enumerate(listed)}
    assert {s["ShardId"] for s in listed} == every
    assert all(
        position[s["ParentShardId"]] > position[s["ShardId"]]
        for s in listed
        if "ParentShardId" in s
    )

    proxy.configure(describe_order="hashed", max_page_size=2)
    assert {s["ShardId"] for s in list_shards(streams, arn)} == every

    root = next(s["ShardId"] for s in listed if "ParentShardId" not in s)
    children = streams.describe_stream(
        StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": root}
    )["StreamDescription"]["Shards"]
    assert len(children) == 2 and all(c["ParentShardId"] == root for c in children)


def test_reenabled_stream_gets_a_new_arn_and_the_old_one_closes(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    table = new_table(dynamodb)
    old_arn = stream_arn(dynamodb, table)
    put(dynamodb, table, "a", 1)
    new_arn = proxy.reenable_stream(table)
    put(dynamodb, table, "a", 2)
    assert new_arn != old_arn and stream_arn(dynamodb, table) == new_arn
    assert {s["StreamArn"] for s in streams.list_streams(TableName=table)["Streams"]} == {
        old_arn,
        new_arn,
    }

    old = streams.describe_stream(StreamArn=old_arn)["StreamDescription"]
    assert old["StreamStatus"] == "DISABLED"
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in old["Shards"])
    new = streams.describe_stream(StreamArn=new_arn)["StreamDescription"]
    assert new["StreamStatus"] == "ENABLED" and new["StreamLabel"] == new_arn.rsplit("/", 1)[1]
    assert not {s["ShardId"] for s in old["Shards"]} & {s["ShardId"] for s in new["Shards"]}

    def values(arn: str) -> list[str]:
        return [
            r["dynamodb"]["NewImage"]["v"]["N"] for _, rs in read_lineage(streams, arn) for r in rs
        ]

    assert values(old_arn) == ["1"] and values(new_arn) == ["2"]

    proxy.disable_stream(table)
    put(dynamodb, table, "a", 3)  # not streamed while disabled
    later = proxy.enable_stream(table)
    put(dynamodb, table, "a", 4)
    assert values(later) == ["4"]
    assert "StreamSpecification" in dynamodb.describe_table(TableName=table)["Table"]


def test_unknown_shard_and_bad_iterator_are_client_errors(
    proxy: StreamFaultProxy, dynamodb: Any, streams: Any
) -> None:
    table = new_table(dynamodb)
    arn = stream_arn(dynamodb, table)
    with pytest.raises(ClientError) as err:
        streams.get_shard_iterator(
            StreamArn=arn,
            ShardId="shardId-00000000000000000000-00000000",
            ShardIteratorType="LATEST",
        )
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        streams.get_records(ShardIterator="garbage")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
