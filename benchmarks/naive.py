"""The naive baseline the data path is compared with, on each engine.

What a first implementation would do: botocore's own response parser, boto3's
``TypeDeserializer`` on every attribute, one SQL statement per record (an upsert or a delete),
one transaction per page, maps/lists/sets rendered with ``json.dumps``. It never touches the
product's accelerators, so changes there cannot move the baseline.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import botocore.session
import duckdb
import pyarrow as pa
from boto3.dynamodb.types import Binary, TypeDeserializer
from botocore.parsers import create_parser

KEY = "order_id"


class _Engine:
    """A connection and its SQL for one engine: autocommit, explicit BEGIN/COMMIT per page."""

    def __init__(self, engine: str, postgres: str | None) -> None:
        self.engine = engine
        self._cleanup: Callable[[], None] = lambda: None
        if engine == "duckdb":
            self.con: Any = duckdb.connect(":memory:")
            self.mark = "?"
        elif engine == "sqlite":
            # Like the accelerator's memory mode: a WAL file in RAM.
            folder = tempfile.TemporaryDirectory(
                dir="/dev/shm" if Path("/dev/shm").is_dir() else None
            )
            self.con = sqlite3.connect(Path(folder.name) / "naive.sqlite", isolation_level=None)
            self.con.execute("PRAGMA journal_mode = WAL")
            self.con.execute("PRAGMA synchronous = NORMAL")
            self._cleanup = folder.cleanup
            self.mark = "?"
        else:
            import psycopg

            self.con = psycopg.connect(postgres or "", autocommit=True)
            self.con.execute("SET synchronous_commit = off")
            self.con.execute("DROP TABLE IF EXISTS naive_orders")
            self.mark = "%s"
        self.names: list[str] | None = None

    def create(self, row: dict[str, Any]) -> None:
        self.names = list(row)
        types = "BYTEA" if self.engine == "postgres" else "BLOB"
        cols = ", ".join(f'"{n}" {_sql_type(row[n], types)}' for n in self.names)
        self.con.execute(f'CREATE TABLE naive_orders ({cols}, PRIMARY KEY ("{KEY}"))')
        marks = ", ".join(self.mark for _ in self.names)
        if self.engine == "postgres":
            updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in self.names if n != KEY)
            self.upsert = (
                f"INSERT INTO naive_orders VALUES ({marks}) "
                f'ON CONFLICT ("{KEY}") DO UPDATE SET {updates}'
            )
        else:
            self.upsert = f"INSERT OR REPLACE INTO naive_orders VALUES ({marks})"
        self.delete = f'DELETE FROM naive_orders WHERE "{KEY}" = {self.mark}'

    def write(self, event: str, row: dict[str, Any]) -> None:
        if self.names is None:
            self.create(row)
        assert self.names is not None
        if event == "REMOVE":
            self.con.execute(self.delete, [row[KEY]])
        else:
            self.con.execute(self.upsert, [_plain(row.get(n)) for n in self.names])

    def bulk(self, rows: list[dict[str, Any]]) -> None:
        """Untimed preload in one statement (DuckDB) or one executemany."""
        if self.names is None:
            self.create(rows[0])
        assert self.names is not None
        values = [[_plain(row.get(n)) for n in self.names] for row in rows]
        if self.engine == "duckdb":
            preload = pa.table(list(zip(*values, strict=True)), names=self.names)  # noqa: F841
            self.con.execute("INSERT INTO naive_orders SELECT * FROM preload")
        else:
            cur = self.con.cursor()
            cur.executemany(self.upsert, values)

    def close(self) -> None:
        if self.engine == "postgres":
            self.con.execute("DROP TABLE IF EXISTS naive_orders")
        self.con.close()
        self._cleanup()


def _shape(operation: str) -> Any:
    service = "dynamodb" if operation == "Scan" else "dynamodbstreams"
    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation).output_shape


def _entries(parsed: dict[str, Any], operation: str) -> list[tuple[str, dict[str, Any]]]:
    if operation == "Scan":
        return [("INSERT", i) for i in parsed["Items"]]
    return [
        (r["eventName"], r["dynamodb"].get("NewImage") or r["dynamodb"]["Keys"])
        for r in parsed["Records"]
    ]


def prepare(
    engine: str, postgres: str | None, preload: list[bytes], bodies: list[bytes], operation: str
) -> tuple[Callable[[], int], Callable[[], None]]:
    """Open the engine and load ``preload`` Scan pages (untimed); return the timed run that
    applies every body of ``bodies`` (``Scan`` or ``GetRecords`` responses), and the cleanup."""
    parser = create_parser("json")
    des = TypeDeserializer()
    target = _Engine(engine, postgres)

    def apply(pages: list[bytes], op: str) -> int:
        shape = _shape(op)
        records = 0
        for body in pages:
            parsed = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
            target.con.execute("BEGIN")
            for event, image in _entries(parsed, op):
                target.write(event, {k: des.deserialize(v) for k, v in image.items()})
                records += 1
            target.con.execute("COMMIT")
        return records

    shape = _shape("Scan")
    for body in preload:
        parsed = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
        target.bulk([{k: des.deserialize(v) for k, v in i.items()} for i in parsed["Items"]])

    return partial(apply, bodies, operation), target.close


def _sql_type(value: object, blob: str) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, Decimal):
        return "DOUBLE PRECISION"
    if isinstance(value, Binary):
        return blob
    return "VARCHAR"  # strings; maps, lists and sets as JSON text


def _plain(value: object) -> object:
    if isinstance(value, dict | list | set):
        return json.dumps(_plain_python(value), default=str)
    if isinstance(value, Binary):
        return bytes(value.value)
    return float(value) if isinstance(value, Decimal) else value


def _plain_python(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain_python(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain_python(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value
