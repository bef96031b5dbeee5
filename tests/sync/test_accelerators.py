"""The accelerator contract, run against every real engine: DuckDB and SQLite (memory and file),
a PostgreSQL server and Cayenne (Vortex files and a SQLite metastore).

PostgreSQL: ``DYNAMIRROR_TEST_POSTGRES`` (a libpq connection string to the server, default
``host=127.0.0.1 port=5432 user=postgres dbname=postgres``); the tests create the database
``dynamirror_test`` if missing and drop the tables they create.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest
import sqlglot

from sync.accelerators import engine_spec
from sync.accelerators.base import CHECKPOINT_TABLE, Accelerator, open_accelerator
from sync.accelerators.cayenne.engine import CayenneError
from sync.accelerators.postgres import positional
from sync.accelerators.postgres_spec import spicepod_connection
from sync.accelerators.query import QueryError
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.pipeline import STAGING_SUFFIX
from sync.schema import Column, ColumnType, Index, SchemaChangeError, TableSpec
from sync.settings import AccelerationSettings

ENGINES = [
    "duckdb-memory",
    "duckdb-file",
    "sqlite-memory",
    "sqlite-file",
    "postgres",
    "cayenne-file",
]
PERSISTENT = ["duckdb-file", "sqlite-file", "postgres", "cayenne-file"]
ENGINE_ERRORS = (duckdb.Error, sqlite3.Error, psycopg.Error, CayenneError)
TEST_DATABASE = "dynamirror_test"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"

UPSERT, DELETE = Op.UPSERT, Op.DELETE


def engines(**gaps: pytest.MarkDecorator) -> list[Any]:
    """Every engine, with an ``xfail`` mark on the engines named in ``gaps``."""
    unknown = set(gaps) - {e.replace("-", "_") for e in ENGINES}
    assert not unknown, unknown
    return [pytest.param(e, marks=gaps.get(e.replace("-", "_"), ())) for e in ENGINES]


# -- engines under test ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_connection() -> dict[str, str]:
    """libpq keywords of the test database, created on the test server if missing."""
    server = os.environ.get(
        "DYNAMIRROR_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )
    with psycopg.connect(server, autocommit=True) as con:
        exists = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEST_DATABASE])
        if exists.fetchone() is None:
            con.execute(f"CREATE DATABASE {TEST_DATABASE}")
    params = psycopg.conninfo.conninfo_to_dict(server)
    return {**{k: str(v) for k, v in params.items()}, "dbname": TEST_DATABASE}


@dataclass
class Engine:
    """One engine configuration; hands out accelerators and names, cleans up after the test."""

    id: str
    settings: AccelerationSettings
    opened: list[Accelerator] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def open(self) -> Accelerator:
        accelerator = open_accelerator(self.settings)
        self.opened.append(accelerator)
        return accelerator

    def name(self) -> str:
        """A table and dataset name no other test (or earlier run, for PostgreSQL) uses."""
        self.names.append(f"t_{uuid.uuid4().hex[:12]}")
        return self.names[-1]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    kind, _, mode = str(request.param).partition("-")
    connection = request.getfixturevalue("postgres_connection") if kind == "postgres" else None
    file = tmp_path / f"mirror.{kind}" if mode == "file" else None
    settings = AccelerationSettings(kind, mode or "file", file, connection)  # type: ignore[arg-type]
    under_test = Engine(str(request.param), settings)
    yield under_test
    for accelerator in under_test.opened:
        accelerator.close()
    if connection is not None and under_test.names:
        # A connection left open in a transaction would block the DROP: fail, don't hang.
        cleanup = {**connection, "options": "-c lock_timeout=5s"}
        with psycopg.connect(**cleanup, autocommit=True) as con:
            for name in under_test.names:
                con.execute(f'DROP TABLE IF EXISTS "{name}", "{name}{STAGING_SUFFIX}"')
            if con.execute("SELECT to_regclass(%s)", [CHECKPOINT_TABLE]).fetchone() != (None,):
                con.execute(
                    f"DELETE FROM {CHECKPOINT_TABLE} WHERE dataset = ANY(%s)", [under_test.names]
                )


# -- helpers --------------------------------------------------------------------------------


def make_spec(name: str, *extra: Column) -> TableSpec:
    columns = (
        Column("pk", ColumnType.VARCHAR),
        Column("n", ColumnType.BIGINT),
        Column("x", ColumnType.DOUBLE),
        Column("s", ColumnType.VARCHAR),
        Column("ok", ColumnType.BOOLEAN),
        Column("raw", ColumnType.BLOB),
        Column("doc", ColumnType.JSON),
    )
    return TableSpec(name, columns + extra, ("pk",))


def batch(
    spec: TableSpec, rows: list[dict[str, Any]], checkpoint: Checkpoint | None = None
) -> ChangeBatch:
    """A batch of ``rows`` (each with ``_op``; missing columns are null), in stream order."""
    schema = pa.schema(
        [pa.field(OP_COLUMN, pa.int8(), nullable=False)]
        + [pa.field(c.name, c.type.arrow) for c in spec.columns]
    )
    table = pa.Table.from_pylist([{**r, OP_COLUMN: int(r[OP_COLUMN])} for r in rows], schema)
    return ChangeBatch(table, checkpoint, records=len(rows))


def upsert(pk: str, **values: Any) -> dict[str, Any]:
    return {OP_COLUMN: UPSERT, "pk": pk, **values}


def delete(pk: str) -> dict[str, Any]:
    return {OP_COLUMN: DELETE, "pk": pk}


def checkpoint(sequence: str, drained: bool = False) -> Checkpoint:
    return Checkpoint(
        ARN,
        (
            ShardPosition(ARN, "shardId-0001", None, sequence, drained),
            ShardPosition(ARN, "shardId-0002", "shardId-0001", None),
        ),
    )


def query(accelerator: Accelerator, sql_text: str, params: tuple[object, ...] = ()) -> pa.Table:
    """Run DuckDB-dialect SQL, transpiled to the engine's dialect as the server layer does."""
    handle = accelerator.query_handle()
    transpiled = sqlglot.transpile(sql_text, read="duckdb", write=handle.dialect)[0]
    return handle.execute(transpiled, params).read_all()


def rows_of(accelerator: Accelerator, table: str) -> dict[str, dict[str, Any]]:
    return {r["pk"]: r for r in query(accelerator, f'SELECT * FROM "{table}"').to_pylist()}


def values_of(accelerator: Accelerator, table: str, column: str) -> dict[str, Any]:
    return {pk: row[column] for pk, row in rows_of(accelerator, table).items()}


def bootstrap(
    accelerator: Accelerator,
    spec: TableSpec,
    pages: list[list[dict[str, Any]]],
    position: Checkpoint,
) -> None:
    """Load ``pages`` as the pipeline does: into a staging table, swapped in at the end."""
    staging = replace(spec, name=f"{spec.name}{STAGING_SUFFIX}")
    accelerator.create_table(staging)
    for page in pages:
        accelerator.apply(spec.name, staging, batch(staging, page))
    accelerator.swap_in(spec.name, staging, spec.name, position)


def loaded(engine: Engine, name: str, rows: int = 5) -> tuple[Accelerator, TableSpec]:
    """An accelerator whose table ``name`` holds ``rows`` rows and checkpoint ``1``."""
    accelerator = engine.open()
    spec = make_spec(name)
    page = [upsert(f"k{i}", n=i, s=f"v{i}") for i in range(rows)]
    bootstrap(accelerator, spec, [page], checkpoint("1"))
    return accelerator, spec


# -- the contract ---------------------------------------------------------------------------


def test_create_table_replaces_the_table_by_an_empty_one_and_keeps_checkpoints(
    engine: Engine,
) -> None:
    accelerator, spec = loaded(engine, engine.name())
    assert accelerator.table_spec(spec.name) == spec
    assert accelerator.row_count(spec.name) == 5
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")
    assert accelerator.table_spec(engine.name()) is None

    smaller = TableSpec(spec.name, spec.columns[:2], spec.key)
    accelerator.create_table(smaller)

    assert accelerator.table_spec(spec.name) == smaller
    assert accelerator.row_count(spec.name) == 0
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")


def test_bootstrap_pages_fill_the_staging_table_and_swap_in_with_the_checkpoint(
    engine: Engine,
) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    staging = replace(spec, name=f"{name}{STAGING_SUFFIX}")
    accelerator.create_table(staging)
    for page in range(3):
        rows = [upsert(f"k{page}-{i}", n=i) for i in range(100)]
        accelerator.apply(name, staging, batch(staging, rows))
    assert accelerator.row_count(staging.name) == 300
    assert accelerator.table_spec(name) is None
    assert accelerator.load_checkpoint(name) is None  # bootstrap pages store none

    accelerator.swap_in(name, staging, name, checkpoint("1"))

    assert accelerator.table_spec(staging.name) is None
    assert accelerator.table_spec(name) == spec
    assert accelerator.row_count(name) == 300
    assert accelerator.load_checkpoint(name) == checkpoint("1")
    assert values_of(accelerator, name, "n")["k2-99"] == 99


def load_position(sequence: str) -> Checkpoint:
    """A checkpoint as a resumable load commits it: the captured stream position followed by
    where the load stands."""
    loaded_up_to = ShardPosition("scan:orders", "0/1", None, sequence)
    return replace(checkpoint("9"), shards=checkpoint("9").shards + (loaded_up_to,))


def positions(accelerator: Accelerator, dataset: str) -> set[ShardPosition]:
    stored = accelerator.load_checkpoint(dataset)
    return set(stored.shards) if stored else set()


def test_a_load_batch_with_its_position_inserts_and_stores_it_in_one_transaction(
    engine: Engine,
) -> None:
    accelerator, spec = loaded(engine, engine.name())  # a served table, checkpoint "1"
    staging = replace(spec, name=f"{spec.name}{STAGING_SUFFIX}")
    accelerator.create_table(staging)
    for page in range(2):
        rows = [upsert(f"k{page}-{i}", n=i) for i in range(100)]
        load = replace(batch(staging, rows, load_position(str(page))), load=True)
        assert load.inserts_only
        accelerator.apply(staging.name, staging, load)
    assert accelerator.row_count(staging.name) == 200
    assert positions(accelerator, staging.name) == set(load_position("1").shards)
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")  # the served one's

    broken = [upsert("k2-0", n=0), upsert(None, n=1)]  # type: ignore[arg-type] - a null key
    with pytest.raises(ENGINE_ERRORS):
        accelerator.apply(
            staging.name, staging, replace(batch(staging, broken, load_position("2")), load=True)
        )
    assert accelerator.row_count(staging.name) == 200
    assert positions(accelerator, staging.name) == set(load_position("1").shards)

    accelerator.swap_in(spec.name, staging, spec.name, checkpoint("9"))
    assert accelerator.row_count(spec.name) == 200
    assert values_of(accelerator, spec.name, "n")["k1-99"] == 99
    assert accelerator.load_checkpoint(spec.name) == checkpoint("9")


def test_a_second_load_replaces_the_table_and_its_columns_at_once(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    for generation in (2, 3):  # twice: the staging table is created again after a swap
        grown = spec.with_columns([Column(f"g{generation}", ColumnType.BIGINT)])
        page = [upsert(f"new{i}", **{f"g{generation}": generation}) for i in range(3)]
        bootstrap(accelerator, grown, [page], checkpoint(str(generation)))

        assert accelerator.table_spec(spec.name) == grown
        assert values_of(accelerator, spec.name, f"g{generation}") == {
            f"new{i}": generation for i in range(3)
        }
        assert accelerator.load_checkpoint(spec.name) == checkpoint(str(generation))
        changes = batch(grown, [upsert("new0", n=7)], checkpoint(f"{generation}.1"))
        accelerator.apply(spec.name, grown, changes)  # the swapped-in table takes changes
        assert values_of(accelerator, spec.name, "n")["new0"] == 7


def test_a_batch_keeps_the_last_change_of_every_key(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    changes = [
        upsert("k1", n=100),
        upsert("k1", n=101),  # the last upsert wins
        delete("k2"),
        upsert("k2", n=102),  # deleted, then back
        upsert("k3", n=103),
        delete("k3"),  # upserted, then gone
        delete("k4"),  # an existing row, gone
        delete("missing"),  # deleting an absent key changes nothing
        upsert("new", n=7, s="fresh"),
        upsert("k0", s="only s"),  # an upsert is the whole new image: n becomes null
    ]
    accelerator.apply(spec.name, spec, batch(spec, changes, checkpoint("2")))

    rows = rows_of(accelerator, spec.name)
    assert {pk: r["n"] for pk, r in rows.items()} == {"k0": None, "k1": 101, "k2": 102, "new": 7}
    assert rows["k0"]["s"] == "only s"
    assert rows["new"]["s"] == "fresh"
    assert accelerator.row_count(spec.name) == 4
    assert accelerator.load_checkpoint(spec.name) == checkpoint("2")


def test_the_checkpoint_is_stored_with_the_batch_and_replaced_by_the_next(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    at = datetime(2026, 1, 2, 3, 4, 5, 500_000, tzinfo=UTC)
    drained = replace(checkpoint("2", drained=True), watermark=at)
    accelerator.apply(spec.name, spec, batch(spec, [upsert("a", n=1)], drained))
    assert accelerator.load_checkpoint(spec.name) == drained

    child_only = Checkpoint(ARN, (ShardPosition(ARN, "shardId-0002", "shardId-0001", "9"),))
    accelerator.apply(spec.name, spec, batch(spec, [], child_only))  # an empty batch moves it too
    assert accelerator.load_checkpoint(spec.name) == child_only
    assert accelerator.row_count(spec.name) == 6


def test_a_failing_batch_changes_neither_data_nor_checkpoint_nor_columns(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    before = rows_of(accelerator, spec.name)
    evolved = spec.with_columns(
        [Column("added", ColumnType.VARCHAR), Column("n", ColumnType.DOUBLE)]
    )
    changes = [
        delete("k2"),
        upsert("k1", n=1.5, added="x"),
        upsert(None, n=1.0),  # type: ignore[arg-type] - a null key: the engine refuses the batch
    ]

    with pytest.raises(ENGINE_ERRORS):
        accelerator.apply(spec.name, evolved, batch(evolved, changes, checkpoint("2")))

    assert rows_of(accelerator, spec.name) == before
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")
    assert accelerator.table_spec(spec.name) == spec
    # The same accelerator goes on: the evolved columns are added by the next good batch.
    accelerator.apply(spec.name, evolved, batch(evolved, changes[:2], checkpoint("2")))
    assert accelerator.table_spec(spec.name) == evolved
    assert rows_of(accelerator, spec.name)["k1"]["added"] == "x"
    assert accelerator.load_checkpoint(spec.name) == checkpoint("2")


def test_new_columns_and_widened_types_are_applied_with_the_batch(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name(), rows=3)
    name = spec.name

    grown = spec.with_columns([Column("tags", ColumnType.JSON)])
    accelerator.apply(name, grown, batch(grown, [upsert("k9", tags='["a"]')], checkpoint("2")))
    assert accelerator.table_spec(name) == grown
    assert json.loads(values_of(accelerator, name, "tags")["k9"]) == ["a"]
    assert values_of(accelerator, name, "tags")["k0"] is None

    doubled = grown.with_columns([Column("n", ColumnType.DOUBLE)])
    accelerator.apply(name, doubled, batch(doubled, [upsert("k8", n=2.5)], checkpoint("3")))
    assert accelerator.table_spec(name) == doubled
    n = query(accelerator, f'SELECT pk, n FROM "{name}"')
    assert n.schema.field("n").type == pa.float64()
    assert dict(zip(n["pk"].to_pylist(), n["n"].to_pylist(), strict=True)) == {
        "k0": 0.0,
        "k1": 1.0,
        "k2": 2.0,
        "k8": 2.5,
        "k9": None,
    }

    text = doubled.with_columns([Column("n", ColumnType.VARCHAR), Column("ok", ColumnType.VARCHAR)])
    accelerator.apply(name, text, batch(text, [upsert("k7", n="seven", ok="yes")], checkpoint("4")))
    assert accelerator.table_spec(name) == text
    n_text = values_of(accelerator, name, "n")
    assert n_text["k7"] == "seven"
    # Existing values are kept, rendered as text by the engine (2.5 → '2.5'; 1.0 → '1' or '1.0').
    assert {pk: float(v) for pk, v in n_text.items() if pk not in ("k7", "k9")} == {
        "k0": 0.0,
        "k1": 1.0,
        "k2": 2.0,
        "k8": 2.5,
    }
    assert accelerator.load_checkpoint(name) == checkpoint("4")


def test_a_narrowed_column_is_refused_and_changes_nothing(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name(), rows=3)
    before = rows_of(accelerator, spec.name)
    narrowed = spec.with_columns([Column("x", ColumnType.BIGINT), Column("new", ColumnType.DATE)])

    with pytest.raises(SchemaChangeError, match="'x' cannot change from DOUBLE to BIGINT"):
        accelerator.apply(spec.name, narrowed, batch(narrowed, [upsert("k9")], checkpoint("2")))

    assert accelerator.table_spec(spec.name) == spec
    assert rows_of(accelerator, spec.name) == before
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")


def test_columns_beyond_the_spec_are_kept_when_another_widens(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name(), rows=3)
    without_s = tuple(c for c in spec.columns if c.name != "s")
    narrower = replace(spec, columns=without_s).with_columns([Column("n", ColumnType.DOUBLE)])
    accelerator.apply(spec.name, narrower, batch(narrower, [upsert("k9", n=9.5)], checkpoint("2")))

    held = accelerator.table_spec(spec.name)
    assert held is not None and held.column("s") == Column("s", ColumnType.VARCHAR)
    assert held.column("n") == Column("n", ColumnType.DOUBLE)
    assert values_of(accelerator, spec.name, "s") == {
        "k0": "v0",
        "k1": "v1",
        "k2": "v2",
        "k9": None,
    }
    assert values_of(accelerator, spec.name, "n")["k9"] == 9.5


def test_bigint_widened_straight_to_varchar_keeps_the_digits(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name(), rows=3)
    text = spec.with_columns([Column("n", ColumnType.VARCHAR)])
    accelerator.apply(spec.name, text, batch(text, [upsert("k9", n="x")], checkpoint("2")))
    assert values_of(accelerator, spec.name, "n") == {"k0": "0", "k1": "1", "k2": "2", "k9": "x"}


def test_queries_return_arrow_with_the_column_types(engine: Engine) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    full = upsert(
        "a", n=2**62, x=0.25, s="text é", ok=True, raw=b"\x00\xff", doc='{"k": [1, {"z": null}]}'
    )
    bootstrap(accelerator, spec, [], checkpoint("1"))
    accelerator.apply(name, spec, batch(spec, [full, upsert("b")], checkpoint("2")))

    table = query(accelerator, f'SELECT * FROM "{name}" ORDER BY pk')
    assert [(f.name, f.type) for f in table.schema] == [
        (c.name, c.type.arrow) for c in spec.columns
    ]
    a, b = table.to_pylist()
    assert {k: v for k, v in a.items() if k != "doc"} == {
        "pk": "a",
        "n": 2**62,
        "x": 0.25,
        "s": "text é",
        "ok": True,
        "raw": b"\x00\xff",
    }
    assert json.loads(a["doc"]) == {"k": [1, {"z": None}]}
    assert all(v is None for k, v in b.items() if k != "pk")

    empty = query(accelerator, f'SELECT n, s FROM "{name}" WHERE false')
    assert empty.num_rows == 0
    assert empty.schema.types == [pa.int64(), pa.string()]
    counted = query(accelerator, f'SELECT count(*) AS c FROM "{name}"')
    assert counted.schema.types == [pa.int64()]
    assert counted.to_pylist() == [{"c": 2}]


def test_queries_take_positional_parameters(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    # A '%' literal and '?' inside quotes next to real parameters, as a client would write them.
    sql_text = (
        f"SELECT pk, s FROM \"{spec.name}\" WHERE s LIKE 'v%' AND pk <> '?' "
        "AND n >= ? AND pk <> ? ORDER BY pk"
    )
    table = query(accelerator, sql_text, (2, "k3"))
    assert table.to_pylist() == [{"pk": "k2", "s": "v2"}, {"pk": "k4", "s": "v4"}]


def test_the_spec_describes_the_engine_and_its_numbered_placeholders_bind(engine: Engine) -> None:
    """The server renders parameters in the spec's placeholder style (``$1``/``?1``): the
    engine's handle binds them by number, whatever order they appear in."""
    accelerator = engine.open()
    spec = engine_spec(engine.settings.engine)
    handle = accelerator.query_handle()
    assert (accelerator.engine, handle.dialect) == (spec.name, spec.dialect)
    assert accelerator.type_support == spec.type_support
    p = spec.placeholder
    table = handle.execute(f"SELECT {p}2 AS b, {p}1 AS a, {p}2 AS c", ("x", "y")).read_all()
    assert table.to_pylist() == [{"b": "y", "a": "x", "c": "y"}]


def test_engine_errors_reach_the_client_as_query_errors(engine: Engine) -> None:
    accelerator, _ = loaded(engine, engine.name())
    with pytest.raises(QueryError, match="(?i)no_such_table"):
        accelerator.query_handle().execute("SELECT * FROM no_such_table").read_all()
    with pytest.raises(QueryError):
        accelerator.query_handle().execute("SELEKT 1").read_all()


@pytest.mark.parametrize("engine", engines(), indirect=True)
def test_the_query_handle_cannot_write(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    with pytest.raises(QueryError):
        accelerator.query_handle().execute(f'DELETE FROM "{spec.name}"').read_all()
    assert accelerator.row_count(spec.name) == 5


class Readers:
    """Threads running one query in a loop while the test writes; they keep what they saw."""

    def __init__(self, accelerator: Accelerator, sql_text: str, threads: int = 3) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.errors: list[BaseException] = []
        self._accelerator = accelerator
        self._sql = sql_text
        self._stop = threading.Event()
        self._ran = threading.Condition()
        self._threads = [threading.Thread(target=self._read) for _ in range(threads)]

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                row = query(self._accelerator, self._sql).to_pylist()[0]
                with self._ran:
                    self.seen.append(tuple(row.values()))
                    self._ran.notify_all()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)

    def wait_for_a_query(self) -> None:
        """Return once one more query has completed (so reads and writes interleave)."""
        with self._ran:
            count = len(self.seen)
            assert self._ran.wait_for(lambda: len(self.seen) > count or self.errors, 10)

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


@pytest.mark.slow  # queries racing applies for a while
def test_queries_run_during_applies_and_see_whole_batches(engine: Engine) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    keys = [f"k{i:03}" for i in range(100)]
    bootstrap(accelerator, spec, [[upsert(k, n=0) for k in keys]], checkpoint("0"))
    versions = 25

    sql_text = f'SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM "{name}"'
    with Readers(accelerator, sql_text) as readers:
        for version in range(1, versions + 1):
            changes: list[dict[str, Any]] = []
            for i, k in enumerate(keys):
                if i % 3 == 0:  # every third key deleted and re-inserted in the batch
                    changes.append(delete(k))
                changes.append(upsert(k, n=version))
            readers.wait_for_a_query()
            accelerator.apply(name, spec, batch(spec, changes, checkpoint(str(version))))

    assert not readers.errors, readers.errors
    assert all(c == len(keys) and lo == hi for c, lo, hi in readers.seen), "saw half a batch"
    assert len({lo for _, lo, _ in readers.seen}) > 1, "no query ran between the batches"
    assert values_of(accelerator, name, "n") == dict.fromkeys(keys, versions)
    assert accelerator.load_checkpoint(name) == checkpoint(str(versions))


def test_queries_during_loads_see_the_old_table_or_the_new_one(engine: Engine) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    bootstrap(accelerator, spec, [[upsert(f"k{i}", n=0) for i in range(100)]], checkpoint("0"))
    loads = 3

    sql_text = f'SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM "{name}"'
    with Readers(accelerator, sql_text) as readers:
        for n in range(1, loads + 1):  # load n: 100 + 50 n rows, all with n
            rows = [upsert(f"k{i}", n=n) for i in range(100 + 50 * n)]
            readers.wait_for_a_query()
            bootstrap(accelerator, spec, [rows[:100], rows[100:]], checkpoint(str(n)))

    assert not readers.errors, readers.errors
    every_load = {(100 + 50 * n, n, n) for n in range(loads + 1)}
    assert set(readers.seen) <= every_load, "a query saw a partial load"
    assert len(set(readers.seen)) > 1, "no query ran between the loads"
    assert accelerator.row_count(name) == 100 + 50 * loads
    assert accelerator.load_checkpoint(name) == checkpoint(str(loads))


def test_results_closed_before_their_end_leave_the_engine_usable(engine: Engine) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    rows = 40_000  # more than one Arrow batch of a result
    bootstrap(accelerator, spec, [[upsert(f"k{i:05}", n=i) for i in range(rows)]], checkpoint("1"))
    handle = accelerator.query_handle()
    for _ in range(6):  # more than the engines keep open between queries
        handle.execute(f'SELECT pk, n FROM "{name}"').close()  # not read at all
        partly = handle.execute(f'SELECT pk, n FROM "{name}"')
        partly.read_next_batch()
        partly.close()
    gc.collect()  # an engine connection left open would warn here, and warnings are errors

    accelerator.apply(name, spec, batch(spec, [delete("k00000")], checkpoint("2")))
    assert query(accelerator, f'SELECT count(*) AS c FROM "{name}"').to_pylist() == [
        {"c": rows - 1}
    ]


def test_close_is_idempotent_and_the_accelerator_is_a_context_manager(engine: Engine) -> None:
    with open_accelerator(engine.settings) as accelerator:
        bootstrap(accelerator, make_spec(engine.name()), [[upsert("a")]], checkpoint("1"))
    accelerator.close()
    accelerator.close()


def test_datasets_in_one_database_keep_their_own_tables_and_checkpoints(engine: Engine) -> None:
    accelerator = engine.open()
    orders, users = engine.name(), engine.name()
    for name, n in ((orders, 1), (users, 2)):
        bootstrap(accelerator, make_spec(name), [[upsert("a", n=n)]], checkpoint(str(n)))

    # A load of one dataset touches only its own table and checkpoint.
    bootstrap(accelerator, make_spec(orders), [[upsert("a", n=1)]], checkpoint("3"))
    users_spec = make_spec(users)
    accelerator.apply(users, users_spec, batch(users_spec, [upsert("b")], checkpoint("4")))

    assert accelerator.row_count(orders) == 1
    assert accelerator.load_checkpoint(orders) == checkpoint("3")
    assert accelerator.row_count(users) == 2
    assert accelerator.load_checkpoint(users) == checkpoint("4")
    joined = query(
        accelerator,
        f'SELECT o.n AS o, u.n AS u FROM "{orders}" AS o JOIN "{users}" AS u ON o.pk = u.pk',
    )
    assert joined.to_pylist() == [{"o": 1, "u": 2}]


@pytest.mark.parametrize("engine", PERSISTENT, indirect=True)
def test_a_reopened_database_has_the_tables_and_checkpoints_committed(engine: Engine) -> None:
    first, spec = loaded(engine, engine.name())
    first.close()

    second = engine.open()
    assert second.table_spec(spec.name) == spec
    assert second.load_checkpoint(spec.name) == checkpoint("1")
    assert second.row_count(spec.name) == 5
    second.apply(spec.name, spec, batch(spec, [delete("k0")], checkpoint("2")))
    assert second.row_count(spec.name) == 4


@pytest.mark.parametrize(
    "engine",
    engines(
        postgres=pytest.mark.xfail(
            reason="PostgreSQL text cannot hold U+0000 (DynamoDB strings can)",
            raises=psycopg.errors.CharacterNotInRepertoire,
            strict=True,
        )
    ),
    indirect=True,
)
def test_strings_with_nul_characters_round_trip(engine: Engine) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    bootstrap(accelerator, spec, [], checkpoint("1"))
    accelerator.apply(name, spec, batch(spec, [upsert("a", s="x\x00y")], checkpoint("2")))
    assert values_of(accelerator, name, "s") == {"a": "x\x00y"}


# -- PostgreSQL: the server going away, connection parameters, placeholders -----------------


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_postgres_server_gone_mid_batch_leaves_it_unapplied_and_the_next_apply_reconnects(
    engine: Engine,
) -> None:
    accelerator, spec = loaded(engine, engine.name())
    before = rows_of(accelerator, spec.name)
    changes = batch(spec, [delete("k2"), upsert("k1", n=100)], checkpoint("2"))
    connection = engine.settings.connection
    assert connection is not None
    failures: list[BaseException] = []

    def apply() -> None:
        try:
            accelerator.apply(spec.name, spec, changes)
        except BaseException as e:  # noqa: BLE001 - checked below
            failures.append(e)

    with psycopg.connect(**connection) as admin:
        # Hold the dataset's checkpoint rows: the batch writes its rows, then waits on them.
        admin.execute(
            f"SELECT * FROM {CHECKPOINT_TABLE} WHERE dataset = %s FOR UPDATE", [spec.name]
        )
        applying = threading.Thread(target=apply)
        applying.start()
        pid = wait_for_blocked_backend(admin)
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        admin.rollback()
        applying.join(10)

    assert len(failures) == 1 and isinstance(failures[0], psycopg.OperationalError), failures
    assert rows_of(accelerator, spec.name) == before
    assert accelerator.load_checkpoint(spec.name) == checkpoint("1")
    accelerator.apply(spec.name, spec, changes)  # a new connection, as the pipeline's retry does
    assert values_of(accelerator, spec.name, "n") == {"k0": 0, "k1": 100, "k3": 3, "k4": 4}
    assert accelerator.load_checkpoint(spec.name) == checkpoint("2")


def wait_for_blocked_backend(admin: psycopg.Connection[Any]) -> int:
    """The server process of the connection waiting on a lock ``admin`` holds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("the batch never waited on the lock")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_postgres_a_query_cannot_make_the_pooled_connections_writable(engine: Engine) -> None:
    accelerator, spec = loaded(engine, engine.name())
    handle = accelerator.query_handle()
    for _ in range(3):  # on whichever pooled connection each query lands
        off = "SELECT set_config('default_transaction_read_only', 'off', false)"
        assert handle.execute(off).read_all().to_pylist() == [{"set_config": "off"}]
        with pytest.raises(QueryError, match="read-only transaction"):
            handle.execute(f'DELETE FROM "{spec.name}" RETURNING pk').read_all()
    assert accelerator.row_count(spec.name) == 5


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_postgres_an_older_checkpoint_table_gains_the_new_columns(engine: Engine) -> None:
    """A database written by an earlier version keeps its checkpoints and takes new ones."""
    assert engine.settings.connection is not None
    schema = engine.name()
    admin = psycopg.connect(**engine.settings.connection, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        admin.execute(
            f"CREATE TABLE {schema}.{CHECKPOINT_TABLE} (dataset VARCHAR NOT NULL, "
            "stream_arn VARCHAR NOT NULL, shard_id VARCHAR NOT NULL, parent_shard_id VARCHAR, "
            "sequence_number VARCHAR, drained BOOLEAN NOT NULL, updated_at VARCHAR NOT NULL, "
            "PRIMARY KEY (dataset, stream_arn, shard_id))"
        )
        admin.execute(
            f"INSERT INTO {schema}.{CHECKPOINT_TABLE} VALUES ('old', %s, 's1', NULL, '7', false, "
            "'2025-01-01T00:00:00+00:00')",
            [ARN],
        )
        connection = {**engine.settings.connection, "options": f"-c search_path={schema}"}
        settings = AccelerationSettings("postgres", "file", None, connection)
        with open_accelerator(settings) as accelerator:
            assert accelerator.load_checkpoint("old") == Checkpoint(
                ARN, (ShardPosition(ARN, "s1", None, "7"),)
            )
            spec = make_spec("new")
            bootstrap(accelerator, spec, [[upsert("a")]], checkpoint("1"))
            at = datetime(2026, 1, 1, tzinfo=UTC)
            accelerator.apply("new", spec, batch(spec, [], replace(checkpoint("2"), watermark=at)))
            assert accelerator.load_checkpoint("new") == replace(checkpoint("2"), watermark=at)
            assert accelerator.load_checkpoint("old") is not None
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_postgres_unreachable_server_fails_apply_with_an_ordinary_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection = {"host": "127.0.0.1", "port": str(port), "user": "postgres", "dbname": "x"}
    with open_accelerator(AccelerationSettings("postgres", "file", None, connection)) as acc:
        spec = make_spec("unreachable")
        with pytest.raises(psycopg.OperationalError):
            acc.apply("unreachable", spec, batch(spec, [upsert("a")], checkpoint("1")))
        with pytest.raises(QueryError):
            acc.query_handle().execute("SELECT 1")


def test_postgres_location_names_the_server_and_database_but_not_the_password() -> None:
    params = {
        "pg_connection_string": "postgresql://app:secret@db.internal:6543/mirror?sslmode=require",
        "pg_db": "other",
    }
    connection = spicepod_connection(params)
    assert connection == {
        "user": "app",
        "password": "secret",
        "host": "db.internal",
        "port": "6543",
        "dbname": "other",
        "sslmode": "require",
    }
    settings = AccelerationSettings("postgres", "file", None, connection)
    assert settings.location == "postgres://app@db.internal:6543/other"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("sql_text", "expected"),
    [
        ("SELECT a FROM t WHERE a = ? AND b = %s", "SELECT a FROM t WHERE a = $1 AND b = $2"),
        ("SELECT '?', '%s', 'it''s ?' WHERE x = ?", "SELECT '?', '%s', 'it''s ?' WHERE x = $1"),
        ("SELECT E'\\' ?' , \"?\" , ?", "SELECT E'\\' ?' , \"?\" , $1"),
        ("SELECT $$ ? $$, $q$ %s $q$, ?", "SELECT $$ ? $$, $q$ %s $q$, $1"),
        ("SELECT ? -- ?\n, /* ? /* ? */ ? */ ?", "SELECT $1 -- ?\n, /* ? /* ? */ ? */ $2"),
        ("SELECT $1, a$b FROM t WHERE s LIKE 'a%'", "SELECT $1, a$b FROM t WHERE s LIKE 'a%'"),
        ("SELECT doc ? 'k' FROM t WHERE pk = $1", "SELECT doc ? 'k' FROM t WHERE pk = $1"),
    ],
)
def test_postgres_placeholders_are_numbered_outside_quotes_and_comments(
    sql_text: str, expected: str
) -> None:
    assert positional(sql_text) == expected


def test_sqlglot_writes_postgres_parameters_as_percent_s() -> None:
    # The server layer transpiles DuckDB SQL; the postgres handle accepts what comes out.
    sql_text = "SELECT * FROM t WHERE a = ? AND b LIKE 'x%'"
    assert sqlglot.transpile(sql_text, read="duckdb", write="postgres") == [
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%'"
    ]


# -- secondary indexes (acceleration.indexes) -----------------------------------------------

SQL_ENGINES = [e for e in ENGINES if not e.startswith("cayenne")]


def index_names(accelerator: Accelerator, table: str) -> set[str]:
    """The secondary indexes the engine's own catalog lists on ``table``."""
    catalog = {
        "duckdb": f"SELECT index_name FROM duckdb_indexes() WHERE table_name = '{table}'",
        "sqlite": f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' "
        "AND sql IS NOT NULL",
        "postgres": f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}' "
        "AND indexname NOT LIKE '%pkey'",
    }[accelerator.engine]
    with accelerator._reading() as cur:  # type: ignore[attr-defined]  # noqa: SLF001
        return {str(row[0]) for row in cur.execute(catalog).fetchall()}


@pytest.mark.parametrize("engine", SQL_ENGINES, indirect=True)
def test_declared_indexes_are_kept_through_loads_new_columns_and_widening(
    engine: Engine,
) -> None:
    accelerator = engine.open()
    name = engine.name()
    spec = make_spec(name)
    by_s, by_n_tag, by_mail = Index(("s",)), Index(("n", "tag")), Index(("mail",), unique=True)
    accelerator.declare_indexes(name, (by_s, by_n_tag, by_mail))
    bootstrap(
        accelerator, spec, [[upsert(f"k{i}", n=i, s=f"v{i}") for i in range(4)]], checkpoint("1")
    )
    assert index_names(accelerator, name) == {f"{name}_s_idx"}  # tag and mail are not columns yet
    assert index_names(accelerator, f"{name}{STAGING_SUFFIX}") == set()

    # A batch bringing the columns brings the indexes waiting for them.
    grown = spec.with_columns(
        [Column("tag", ColumnType.VARCHAR), Column("mail", ColumnType.VARCHAR)]
    )
    accelerator.apply(
        name, grown, batch(grown, [upsert("k9", n=9, tag="t", mail="a@b")], checkpoint("2"))
    )
    every = {f"{name}_s_idx", f"{name}_n_tag_idx", f"{name}_mail_idx"}
    assert index_names(accelerator, name) == every

    # Columns widened, one indexed and one not (DuckDB refuses to change a column's type
    # while its table has an index).
    wider = grown.with_columns([Column("n", ColumnType.DOUBLE), Column("x", ColumnType.VARCHAR)])
    accelerator.apply(name, wider, batch(wider, [upsert("k8", n=8.5, mail="c@d")], checkpoint("3")))
    assert index_names(accelerator, name) == every
    assert values_of(accelerator, name, "n")["k8"] == 8.5

    # A unique index refuses a duplicate; the batch changes nothing.
    with pytest.raises(ENGINE_ERRORS):
        accelerator.apply(name, wider, batch(wider, [upsert("k7", mail="a@b")], checkpoint("4")))
    assert "k7" not in rows_of(accelerator, name)

    # A load swapped in again has them all, and a second accelerator declaring them again
    # (a restart) finds nothing to do.
    bootstrap(
        accelerator, wider, [[upsert("j0", n=1.0, s="x", tag="t", mail="m")]], checkpoint("5")
    )
    assert index_names(accelerator, name) == every
    assert set(rows_of(accelerator, name)) == {"j0"}
    accelerator.declare_indexes(name, (by_s, by_n_tag, by_mail))
    assert index_names(accelerator, name) == every
    # Lookups by an indexed column answer as without the index.
    found = query(accelerator, f'SELECT pk FROM "{name}" WHERE s = ?', ("x",))
    assert found.to_pylist() == [{"pk": "j0"}]


def test_cayenne_says_it_builds_no_secondary_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AccelerationSettings("cayenne", "file", tmp_path / "c")
    with open_accelerator(settings) as accelerator:
        accelerator.declare_indexes("t", (Index(("status",)),))
    assert "acceleration.indexes (status) not built: Cayenne indexes the key" in caplog.text
