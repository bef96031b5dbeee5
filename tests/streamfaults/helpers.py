"""Plain boto3 readers used by the layer's own tests: a straightforward consumer that lists
every shard and reads parents before children, as the runtime must."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.config import Config

CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
REGION = "us-east-1"


def client(service: str, url: str, attempts: int | None = None) -> Any:
    """A boto3 client on `url`; `attempts` caps total tries (botocore's `max_attempts` counts
    retries after the first try, so `max_attempts=1` would still retry once)."""
    config = Config(retries={"total_max_attempts": attempts}) if attempts is not None else None
    return boto3.client(service, endpoint_url=url, region_name=REGION, config=config, **CREDENTIALS)


def new_table(dynamodb: Any, prefix: str = "t") -> str:
    """A streamed table with a unique name, so tests can share one emulator."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name


def put(dynamodb: Any, table: str, key: str, value: int) -> None:
    dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "v": {"N": str(value)}})


def stream_arn(dynamodb: Any, table: str) -> str:
    return str(dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"])


def list_shards(streams: Any, arn: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every shard, following LastEvaluatedShardId until it is absent."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": arn}
    if limit:
        kwargs["Limit"] = limit
    while True:
        desc = streams.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(desc["Shards"])
        if not desc.get("LastEvaluatedShardId"):
            return shards
        kwargs["ExclusiveStartShardId"] = desc["LastEvaluatedShardId"]


def read_shard(streams: Any, arn: str, shard_id: str) -> tuple[list[dict[str, Any]], bool]:
    """Records of one shard from TRIM_HORIZON, and whether its end was reached (closed)."""
    it = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    while it:
        page = streams.get_records(ShardIterator=it)
        records.extend(page["Records"])
        it = page.get("NextShardIterator")
        if it and not page["Records"]:
            return records, False  # open shard, caught up
    return records, True


def read_lineage(streams: Any, arn: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Read every shard, each only after its parent (if still listed) was read to its end."""
    shards = list_shards(streams, arn)
    listed = {s["ShardId"] for s in shards}
    done: set[str] = set()
    out: list[tuple[str, list[dict[str, Any]]]] = []
    while len(done) < len(shards):
        ready = [
            s
            for s in shards
            if s["ShardId"] not in done
            and (s.get("ParentShardId") not in listed or s["ParentShardId"] in done)
        ]
        assert ready, "shard lineage has a cycle"
        for shard in ready:
            records, closed = read_shard(streams, arn, shard["ShardId"])
            ended = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            assert closed == ended, f"{shard['ShardId']}: end reached={closed}, closed={ended}"
            out.append((shard["ShardId"], records))
            done.add(shard["ShardId"])
    return out
