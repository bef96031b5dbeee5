"""Helpers for tests: a DynamoDB emulator server over HTTP, tables, and source/mirror diffs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from moto.server import ThreadedMotoServer

CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
REGION = "us-east-1"


@dataclass
class Emulator:
    """moto in server mode on a free loopback port."""

    server: ThreadedMotoServer
    url: str

    def client(self, service: str = "dynamodb", url: str | None = None) -> Any:
        return boto3.client(
            service, endpoint_url=url or self.url, region_name=REGION, **CREDENTIALS
        )


def start_emulator() -> Emulator:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return Emulator(server, f"http://{host}:{port}")


def create_table(
    client: Any,
    name: str,
    range_key: bool = False,
    view_type: str | None = "NEW_AND_OLD_IMAGES",
    hash_type: str = "S",
) -> None:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": hash_type}]
    if range_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "sk", "AttributeType": "N"})
    kwargs: dict[str, Any] = {}
    if view_type:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
    client.create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attrs,
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )


def scan_all(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the source table, as plain Python values."""
    des = TypeDeserializer()
    items, kwargs = [], {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items.extend({k: des.deserialize(v) for k, v in item.items()} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def normalise(value: Any) -> Any:
    """Comparable form of a value from either side (Decimal, bytes, sets, JSON text)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if hasattr(value, "value") and isinstance(value.value, bytes):  # Binary
        return bytes(value.value)
    return value


def random_item(rng: random.Random, pk: str, version: int) -> dict[str, Any]:
    """An item with scalar attributes of every basic kind, some of them optional."""
    item: dict[str, Any] = {
        "pk": {"S": pk},
        "qty": {"N": str(rng.randint(-1000, 1_000_000))},
        "price": {"N": f"{rng.uniform(0, 1000):.2f}"},
        "status": {"S": rng.choice(["new", "paid", "shipped", "returned"])},
        "version": {"N": str(version)},
        "active": {"BOOL": rng.random() < 0.5},
    }
    if rng.random() < 0.3:
        item["note"] = {"S": f"note {rng.random():.6f}"}
    return item


def iter_batches(values: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def fill_table(client: Any, table: str, items: int, seed: int = 2) -> None:
    """Put items ``k0`` … in batches of 25, four requests at a time."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(seed)
    puts = [{"PutRequest": {"Item": random_item(rng, f"k{i}", 0)}} for i in range(items)]

    def write(requests: list[dict[str, Any]]) -> None:
        while requests:
            answer = client.batch_write_item(RequestItems={table: requests})
            requests = answer.get("UnprocessedItems", {}).get(table, [])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, iter_batches(puts, 25)))
