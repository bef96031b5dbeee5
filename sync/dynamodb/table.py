"""DescribeTable: the key, the item count and the stream a dataset mirrors from."""

from __future__ import annotations

from dataclasses import dataclass

from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.errors import classify
from sync.errors import StreamNotConfigured
from sync.schema import Column, ColumnType, TableSpec

REQUIRED_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
_KEY_TYPES = {"S": ColumnType.VARCHAR, "N": ColumnType.BIGINT, "B": ColumnType.BLOB}


@dataclass(frozen=True)
class TableDescription:
    name: str
    key: tuple[str, ...]  # hash key, then range key if any
    key_columns: tuple[Column, ...]
    item_count: int
    size_bytes: int
    stream_arn: str | None
    stream_view_type: str | None
    read_capacity_units: int = 0  # provisioned; 0 for an on-demand (PAY_PER_REQUEST) table

    def require_stream(self) -> str:
        """The stream ARN, or an error that says how to enable the right stream."""
        if self.stream_arn and self.stream_view_type == REQUIRED_VIEW_TYPE:
            return self.stream_arn
        problem = (
            "has no stream enabled"
            if not self.stream_arn
            else f"has a stream with view type {self.stream_view_type}"
        )
        fix = (
            f"aws dynamodb update-table --table-name {self.name} --stream-specification "
            f"StreamEnabled=true,StreamViewType={REQUIRED_VIEW_TYPE}"
        )
        if self.stream_arn:
            fix = (
                f"disable it (aws dynamodb update-table --table-name {self.name} "
                "--stream-specification StreamEnabled=false), then enable it with: " + fix
            )
        raise StreamNotConfigured(
            f"DynamoDB table {self.name!r} {problem}; a {REQUIRED_VIEW_TYPE} stream is required. "
            f"Fix: {fix}"
        )

    def empty_spec(self, sql_name: str) -> TableSpec:
        """The mirrored table with its key columns alone."""
        return TableSpec(sql_name, self.key_columns, self.key)


def describe_table(clients: DynamoDBClients, table: str) -> TableDescription:
    try:
        raw = clients.dynamodb.describe_table(TableName=table)["Table"]
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise classify(e, f"DescribeTable {table}") from e
    key = tuple(
        k["AttributeName"]
        for k in sorted(raw["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
    )
    attr_types = {a["AttributeName"]: a["AttributeType"] for a in raw["AttributeDefinitions"]}
    spec = raw.get("StreamSpecification") or {}
    enabled = spec.get("StreamEnabled", False)
    on_demand = (raw.get("BillingModeSummary") or {}).get("BillingMode") == "PAY_PER_REQUEST"
    provisioned = raw.get("ProvisionedThroughput") or {}
    return TableDescription(
        name=table,
        key=key,
        key_columns=tuple(Column(k, _KEY_TYPES[attr_types[k]]) for k in key),
        item_count=int(raw.get("ItemCount", 0)),
        size_bytes=int(raw.get("TableSizeBytes", 0)),
        stream_arn=raw.get("LatestStreamArn") if enabled else None,
        stream_view_type=spec.get("StreamViewType") if enabled else None,
        read_capacity_units=0 if on_demand else int(provisioned.get("ReadCapacityUnits", 0)),
    )
