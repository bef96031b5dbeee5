"""The server's parts on their own: SQL checking, handles, batch sizing, metadata filters."""

from __future__ import annotations

import time
from datetime import timedelta

import pyarrow as pa
import pytest

from flightsrv.flightsql import metadata, results, sqlcheck
from flightsrv.flightsql.catalog import TableInfo
from flightsrv.flightsql.lru import Lru
from flightsrv.flightsql.running import (
    QueryCancelled,
    QueryTimedOut,
    RunningQueries,
    ServerStopping,
    StopFlag,
)
from flightsrv.flightsql.statements import (
    InvalidHandle,
    IssuedStatements,
    RecentBindings,
    Statement,
)
from tests.harness import wait_for


def check(sql: str) -> sqlcheck.CheckedQuery:
    return sqlcheck.check(sql, "dynamirror", "public")


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT * FROM orders", ("orders",)),
        ("FROM orders SELECT id", ("orders",)),
        (
            "SELECT * FROM Public.Orders JOIN dynamirror.public.items USING (id)",
            ("Orders", "items"),
        ),
        ("WITH a AS (SELECT * FROM orders) SELECT * FROM a, a AS b", ("orders",)),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r", ()),
        ("SELECT * FROM orders WHERE id IN (SELECT order_id FROM items)", ("orders", "items")),
        ("SELECT 1 UNION ALL SELECT 2", ()),
        ("VALUES (1, 'a')", ()),
        ("DESCRIBE orders", ("orders",)),
        ("SUMMARIZE orders", ("orders",)),
        ("SELECT * FROM range(3)", ()),
        ("select 1;", ()),
    ],
)
def test_reads_are_accepted(sql: str, tables: tuple[str, ...]) -> None:
    assert check(sql).tables == tables


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO orders VALUES (1)",
        "UPDATE orders SET id = 2",
        "DELETE FROM orders",
        "MERGE INTO orders USING items ON orders.id = items.id WHEN MATCHED THEN DELETE",
        "CREATE TABLE x (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE orders",
        "ALTER TABLE orders RENAME TO o",
        "ATTACH 'x.db' AS x",
        "DETACH x",
        "COPY orders TO 'x.parquet'",
        "PRAGMA database_list",
        "SET memory_limit = '1GB'",
        "RESET memory_limit",
        "BEGIN TRANSACTION",
        "USE other",
        "LOAD httpfs",
        "CALL checkpoint()",
        "EXPLAIN SELECT 1",
        "SHOW TABLES",
        "SELECT 1; SELECT 2",
        "SELECT * FROM read_parquet('x.parquet')",
        "SELECT * FROM query('DELETE FROM orders')",
        "SELECT * FROM duckdb_settings()",
        "SELECT current_setting('s3_secret_access_key')",
        "SELECT nextval('seq')",
    ],
)
def test_anything_else_is_refused(sql: str) -> None:
    with pytest.raises(sqlcheck.ReadOnlyViolation):
        check(sql)


def test_cte_scope_does_not_hide_a_file() -> None:
    # The CTE named like the file is visible in the subquery only; outside, it is a table name.
    sql = 'SELECT * FROM (WITH "x.csv" AS (SELECT 1) SELECT * FROM "x.csv") a, "x.csv" b'
    assert check(sql).tables == ("x.csv",)


def test_other_catalogs_are_refused_and_other_schemas_name_one_served_table() -> None:
    with pytest.raises(sqlcheck.ReadOnlyViolation, match="other.public.orders is not allowed"):
        check("SELECT * FROM other.public.orders")
    # Whether a dataset is named main.orders is the catalog's to say; the engine gets one name.
    checked = check("SELECT * FROM main.orders")
    assert checked.tables == ("main.orders",)
    assert checked.sql("duckdb") == 'SELECT * FROM "main.orders" AS orders'


def test_syntax_errors_keep_the_parser_message() -> None:
    with pytest.raises(sqlcheck.SqlSyntaxError, match="Expected table name") as caught:
        check("SELECT FROM WHERE")
    assert "\x1b" not in str(caught.value)
    with pytest.raises(sqlcheck.SqlSyntaxError, match="empty"):
        check("  ")


def test_qualifiers_are_stripped_for_the_engine() -> None:
    checked = check("SELECT public.orders.id FROM dynamirror.public.orders")
    assert checked.sql("duckdb") == "SELECT orders.id FROM orders"


def test_positional_parameters_are_numbered_in_text_order() -> None:
    checked = check("FROM orders SELECT ? AS a WHERE id = ? LIMIT ?")
    assert checked.param_count == 3
    # The generated SELECT puts the clauses in another order; numbering keeps the binding.
    assert checked.sql("duckdb") == "SELECT $1 AS a FROM orders WHERE id = $2 LIMIT $3"
    assert checked.sql("sqlite") == "SELECT ?1 AS a FROM orders WHERE id = ?2 LIMIT ?3"
    assert check("SELECT '?', ?").param_count == 1
    assert check("SELECT $2, $1").sql("duckdb") == "SELECT $2, $1"


def test_parameter_styles_that_cannot_bind_positionally() -> None:
    with pytest.raises(sqlcheck.SqlSyntaxError, match="named parameter"):
        check("SELECT $name")
    with pytest.raises(sqlcheck.SqlSyntaxError, match="mixing"):
        check("SELECT ?, $1")


def test_schema_probe_keeps_names_and_bound_limits() -> None:
    assert check("SELECT 1 AS a, 2 AS a").schema_probe_sql("duckdb") == (
        "SELECT 1 AS a, 2 AS a LIMIT 0"
    )
    probe = check("SELECT * FROM orders LIMIT ?").schema_probe_sql("duckdb")
    assert "$1" in probe and probe.endswith("LIMIT 0")


@pytest.mark.parametrize(
    ("sql", "typed_by_values"),
    [
        ("SELECT * FROM orders WHERE id = ? AND customer LIKE ?", False),
        ("SELECT * FROM orders ORDER BY id LIMIT ? OFFSET ?", False),
        ("SELECT o.* FROM orders o JOIN items i ON i.order_id = o.id AND i.id > ?", False),
        ("SELECT customer FROM orders GROUP BY customer HAVING count(*) > ?", False),
        ("SELECT (SELECT max(id) FROM items WHERE id < ?) AS m", False),
        ("SELECT 1", False),
        ("SELECT ? AS x", True),
        ("SELECT CASE WHEN id > ? THEN 'big' END FROM orders", True),
        ("SELECT * FROM range(?)", True),
    ],
)
def test_parameters_that_can_type_a_result_column(sql: str, typed_by_values: bool) -> None:
    assert check(sql).typed_by_values is typed_by_values


def test_parameter_schema_from_compared_columns() -> None:
    info = TableInfo(
        "orders", pa.schema([("id", pa.int64()), ("customer", pa.string())]), ("id",), "duckdb"
    )
    checked = check("SELECT * FROM orders WHERE ? = customer AND id IN (?, ?) AND ? IS NULL")
    schema = checked.parameter_schema({"orders": info})
    assert schema.types == [pa.string(), pa.int64(), pa.int64(), pa.null()]
    assert schema.names == ["$1", "$2", "$3", "$4"]


def test_statement_handles_round_trip() -> None:
    params = pa.table({"a": [1, None], "b": [b"x", b"y"]})
    schema = pa.schema([("n", pa.int64())])
    statement = Statement("SELECT ?", params, schema)
    decoded = Statement.decode(statement.as_ticket(schema, b"id-1").encode())
    assert decoded.query_id == b"id-1"
    assert decoded.sql == "SELECT ?"
    assert decoded.params is not None and decoded.params.equals(params)
    assert decoded.schema is not None and decoded.schema.equals(schema)
    assert decoded.param_rows() == [[1, b"x"], [None, b"y"]]
    assert Statement.decode(Statement("SELECT 1").encode()).param_rows() == [[]]


@pytest.mark.parametrize("data", [b"", b"garbage", Statement("SELECT 1").encode()[:-3]])
def test_foreign_handles_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidHandle):
        Statement.decode(data)


def test_issued_handles_come_back_decoded_and_others_are_parsed() -> None:
    issued = IssuedStatements(limit=2, limit_bytes=1024)
    params = pa.table({"0": ["o-1"]})
    bound = Statement("SELECT * FROM t WHERE k = ?", params, None, b"q1")
    data = issued.encode(bound)
    assert data == bound.encode()
    assert issued.decode(data) is bound  # kept, not parsed again
    heavy = Statement("SELECT ?", pa.table({"0": ["x" * 4096]}), None, b"q2")
    heavy_data = issued.encode(heavy)
    foreign = Statement("SELECT 1", None, pa.schema([("x", pa.int64())]), b"q3").encode()
    for data_, expected in ((heavy_data, heavy), (foreign, Statement.decode(foreign))):
        decoded = issued.decode(data_)
        assert decoded is not expected and decoded == expected
    with pytest.raises(InvalidHandle):
        issued.decode(b"not a handle")


def test_rechunk_bounds_batch_size_without_losing_rows() -> None:
    wide = pa.record_batch({"s": ["x" * 1000] * 10_000, "i": list(range(10_000))})
    pieces = list(results.rechunk([wide, wide.slice(0, 0)], max_bytes=1_000_000))
    assert len(pieces) > 10
    assert all(p.nbytes <= 1_000_000 for p in pieces)
    assert pa.Table.from_batches(pieces).equals(pa.Table.from_batches([wide]))


def test_rechunk_splits_skewed_rows() -> None:
    sizes = [10] * 999 + [2_000_000]
    batch = pa.record_batch({"s": ["y" * n for n in sizes]})
    pieces = list(results.rechunk([batch], max_bytes=1_000_000))
    assert sum(p.num_rows for p in pieces) == 1000
    assert all(p.nbytes <= 1_000_000 or p.num_rows == 1 for p in pieces)


def test_rows_within_bounds_batches_of_fixed_width_columns() -> None:
    schema = pa.schema(
        [
            ("i", pa.int64()),
            ("b", pa.bool_()),
            ("d", pa.decimal128(12, 2)),
            ("t", pa.timestamp("us", "UTC")),
            ("s", pa.struct([("x", pa.int32()), ("y", pa.float64())])),
        ]
    )
    rows = results.rows_within(schema, 256 * 1024)
    assert rows is not None and rows > 1000
    full = {"i": 1, "b": True, "d": 1, "t": 0, "s": {"x": 1, "y": 2.0}}
    batch = pa.RecordBatch.from_pylist([full, {}] * (rows // 2), schema=schema)  # with nulls
    assert batch.nbytes <= 256 * 1024
    for varying in (pa.string(), pa.binary(), pa.list_(pa.int64()), pa.struct([("s", pa.utf8())])):
        assert results.rows_within(schema.append(pa.field("v", varying)), 256 * 1024) is None


def test_conform_renames_and_casts_to_the_announced_schema() -> None:
    announced = pa.schema([("n", pa.int64()), ("s", pa.string())])
    batch = pa.record_batch({"x": pa.array([1], pa.int32()), "y": ["a"]})
    conformed = results.conform(batch, announced)
    assert conformed.schema.equals(announced)
    assert conformed.to_pylist() == [{"n": 1, "s": "a"}]
    with pytest.raises(results.SchemaChanged):
        results.conform(pa.record_batch({"x": ["not a number"], "y": ["a"]}), announced)
    with pytest.raises(results.SchemaChanged):
        results.conform(pa.record_batch({"x": [1]}), announced)


def test_like_patterns() -> None:
    pattern = metadata.like("or_er%")
    assert pattern is not None
    assert pattern.fullmatch("orders") and pattern.fullmatch("order")
    assert not pattern.fullmatch("xorders")
    escaped = metadata.like("a\\_b")
    assert escaped is not None and escaped.fullmatch("a_b") and not escaped.fullmatch("axb")
    assert metadata.like(None) is None


def test_sql_info_value_schema_is_the_canonical_dense_union() -> None:
    table = metadata.sql_info([])
    assert table.schema.equals(metadata.SQL_INFO_SCHEMA, check_metadata=True)
    value = table.schema.field("value").type
    assert value.mode == "dense"
    assert [f.name for f in value] == [
        "string_value",
        "bool_value",
        "bigint_value",
        "int32_bitmask",
        "string_list",
        "int32_to_int32_list_map",
    ]
    assert list(value.type_codes) == [0, 1, 2, 3, 4, 5]
    codes = set(table.column("info_name").to_pylist())
    assert {0, 1, 2, 3, 504} <= codes
    table.validate(full=True)


def test_recent_bindings_are_bounded_and_forgotten_on_close() -> None:
    bindings = RecentBindings(limit=2, limit_bytes=10_000)
    small = pa.table({"a": [1]})
    bindings.remember(b"one", small)
    bindings.remember(b"two", small)
    assert bindings.recall(b"one") is small  # now the most recent
    bindings.remember(b"three", small)
    assert bindings.recall(b"two") is None and bindings.recall(b"one") is small
    bindings.forget(b"one")
    assert bindings.recall(b"one") is None
    bindings.remember(b"huge", pa.table({"s": ["x" * 20_000]}))
    assert bindings.recall(b"huge") is None
    bindings.remember(b"", small)  # handles without an id are never kept
    assert bindings.recall(b"") is None


def test_lru_drops_the_least_recent_over_its_total_weight() -> None:
    lru: Lru[str, str] = Lru(limit=10, limit_weight=5, weigh=len)
    lru.put("a", "xx")
    lru.put("b", "xx")
    assert lru.get("a") == "xx"  # now the most recent
    lru.put("c", "xx")  # weight 6 > 5: "b" goes
    assert lru.get("b") is None and lru.get("a") == "xx" and lru.get("c") == "xx"
    lru.put("a", "x")  # replacing an entry replaces its weight
    lru.put("d", "xx")
    assert [lru.get(k) for k in "acd"] == ["x", "xx", "xx"]


def test_running_queries_cancel_flags_and_remember_cancellations() -> None:
    running = RunningQueries(remember=1)
    flag = running.start(b"q1", "DoGet", "SELECT 1")
    assert len(running) == 1 and not flag.is_set()
    assert running.cancel([b"q1", b"unknown"]) == 1 and flag.is_set()
    running.finish(b"q1", flag)
    assert len(running) == 0
    with pytest.raises(QueryCancelled):
        running.start(b"unknown", "DoGet", "SELECT 1")  # cancelled before it started
    running.start(
        b"q1", "DoGet", "SELECT 1"
    )  # forgotten: only the last cancellation is remembered here


def test_stop_flags_call_back_once_even_when_registered_late() -> None:
    calls: list[str] = []
    running = RunningQueries()
    flag = running.start(b"q1", "DoGet", "SELECT 1")
    flag.on_set(lambda: calls.append("early"))
    running.stop_all()
    running.cancel([b"q1"])
    flag.on_set(lambda: calls.append("late"))  # already set: called at once
    assert flag.is_set() and calls == ["early", "late"]
    assert isinstance(flag.cause, ServerStopping)  # the first cause stays
    assert not StopFlag().is_set()
    with pytest.raises(ServerStopping):
        running.start(b"q2", "DoGet", "SELECT 1")  # none starts during shutdown


class _Context:
    def __init__(self) -> None:
        self.cancelled = False

    def is_cancelled(self) -> bool:
        return self.cancelled


def test_the_watch_stops_queries_past_their_deadline_or_whose_client_left() -> None:
    running = RunningQueries(timeout=timedelta(milliseconds=200))
    timed = running.start(b"slow", "DoGet", "SELECT 1")
    context = _Context()
    left = running.start(b"gone", "GetFlightInfo", "SELECT 2", context)
    context.cancelled = True
    wait_for(left.is_set, 2, "the query whose client left to stop")
    wait_for(timed.is_set, 2, "the query past its deadline to stop")
    assert isinstance(left.cause, QueryCancelled) and isinstance(timed.cause, QueryTimedOut)
    assert "runtime.query.timeout" in str(timed.cause)
    shown = running.snapshot()
    assert [q["sql"] for q in shown] == ["SELECT 1", "SELECT 2"] and all(
        q["stopping"] for q in shown
    )


def test_a_detached_call_context_is_never_touched_again() -> None:
    running = RunningQueries()
    context = _Context()
    flag = running.start(b"q", "DoGet", "SELECT 1", context)
    running.detach(b"q", flag)
    context.cancelled = True  # the call ended; its context would be freed memory
    time.sleep(0.3)
    assert not flag.is_set() and len(running) == 1
