"""Flight SQL catalog-metadata results: their fixed schemas and builders.

Field names, types, nullability and order follow the Flight SQL specification as the Arrow
reference implementations declare it: the Go driver under ADBC compares them exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa

from flightsrv.flightsql.catalog import TableInfo
from flightsrv.proto import FlightSql_pb2 as pb

TABLE_TYPE = "TABLE"
VIEW_TYPE = "VIEW"
SERVER_NAME = "dynamirror"

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(
    pa.field("table_schema", pa.binary(), nullable=False)
)
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("key_name", pa.utf8()),
    ]
)
# Exported keys, imported keys and cross references share one schema.
FOREIGN_KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)
SQL_INFO_VALUE_TYPE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8(), nullable=False),
        pa.field("bool_value", pa.bool_(), nullable=False),
        pa.field("bigint_value", pa.int64(), nullable=False),
        pa.field("int32_bitmask", pa.int32(), nullable=False),
        pa.field("string_list", pa.list_(pa.utf8()), nullable=False),
        pa.field(
            "int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())), nullable=False
        ),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field("value", SQL_INFO_VALUE_TYPE, nullable=False),
    ]
)
XDBC_TYPE_INFO_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.utf8()),
        pa.field("literal_suffix", pa.utf8()),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.utf8()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)


@dataclass(frozen=True)
class Namespace:
    """Where served tables live: one catalog; its default schema holds the bare names, and a
    dataset named ``sales.orders`` is table ``orders`` of schema ``sales``."""

    catalog: str
    schema: str

    def place(self, name: str) -> tuple[str, str]:
        """The schema and table a served name is listed under."""
        schema, dot, table = name.partition(".")
        return (schema, table) if dot else (self.schema, name)

    def schemas(self, served: Sequence[TableInfo]) -> list[str]:
        """The default schema and every schema a served name places a table in, sorted."""
        return sorted({self.schema} | {self.place(info.name)[0] for info in served})


def like(pattern: str | None) -> re.Pattern[str] | None:
    """A Flight SQL filter pattern (SQL LIKE: ``%``, ``_``, ``\\`` escapes) as a regex."""
    if pattern is None:
        return None
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(pattern: re.Pattern[str] | None, value: str) -> bool:
    return pattern is None or pattern.fullmatch(value) is not None


def catalogs(ns: Namespace) -> pa.Table:
    return pa.table({"catalog_name": [ns.catalog]}, schema=CATALOGS_SCHEMA)


def db_schemas(ns: Namespace, served: Sequence[TableInfo], cmd: pb.CommandGetDbSchemas) -> pa.Table:
    rows = []
    if _catalog_matches(ns, cmd.catalog if cmd.HasField("catalog") else None):
        pattern = like(
            cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None
        )
        for schema in ns.schemas(served):
            if _matches(pattern, schema):
                rows.append({"catalog_name": ns.catalog, "db_schema_name": schema})
    return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)


def tables(ns: Namespace, served: Sequence[TableInfo], cmd: pb.CommandGetTables) -> pa.Table:
    """Served tables matching the filters, with their IPC-serialized schema if asked."""
    schema = TABLES_WITH_SCHEMA_SCHEMA if cmd.include_schema else TABLES_SCHEMA
    wanted = _catalog_matches(ns, cmd.catalog if cmd.HasField("catalog") else None)
    schema_pattern = like(
        cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None
    )
    name_pattern = like(
        cmd.table_name_filter_pattern if cmd.HasField("table_name_filter_pattern") else None
    )
    rows = []
    for info in sorted(served, key=lambda t: ns.place(t.name)) if wanted else ():
        db_schema, table = ns.place(info.name)
        if not _matches(schema_pattern, db_schema) or not _matches(name_pattern, table):
            continue
        if cmd.table_types and info.kind not in cmd.table_types:
            continue
        row: dict[str, object] = {
            "catalog_name": ns.catalog,
            "db_schema_name": db_schema,
            "table_name": table,
            "table_type": info.kind,
        }
        if cmd.include_schema:
            row["table_schema"] = described_schema(ns, info).serialize().to_pybytes()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def described_schema(ns: Namespace, info: TableInfo) -> pa.Schema:
    """A table's schema with the Flight SQL column metadata (names, SQL type, read-only)."""
    fields = []
    db_schema, table = ns.place(info.name)
    for field in info.schema:
        meta = dict(field.metadata or {})
        meta.update(
            {
                b"ARROW:FLIGHT:SQL:CATALOG_NAME": ns.catalog.encode(),
                b"ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": db_schema.encode(),
                b"ARROW:FLIGHT:SQL:TABLE_NAME": table.encode(),
                b"ARROW:FLIGHT:SQL:TYPE_NAME": sql_type_name(field.type).encode(),
                b"ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT": b"0",
                b"ARROW:FLIGHT:SQL:IS_READ_ONLY": b"1",
                b"ARROW:FLIGHT:SQL:IS_SEARCHABLE": b"1",
            }
        )
        fields.append(field.with_metadata(meta))
    return pa.schema(fields, metadata=info.schema.metadata)


def table_types() -> pa.Table:
    return pa.table({"table_type": [TABLE_TYPE, VIEW_TYPE]}, schema=TABLE_TYPES_SCHEMA)


def primary_keys(
    ns: Namespace, served: Sequence[TableInfo], cmd: pb.CommandGetPrimaryKeys
) -> pa.Table:
    rows = []
    in_catalog = _catalog_matches(ns, cmd.catalog if cmd.HasField("catalog") else None)
    for info in served if in_catalog else ():
        db_schema, table = ns.place(info.name)
        if table != cmd.table or (cmd.HasField("db_schema") and cmd.db_schema != db_schema):
            continue
        for sequence, column in enumerate(info.primary_key, start=1):
            rows.append(
                {
                    "catalog_name": ns.catalog,
                    "db_schema_name": db_schema,
                    "table_name": table,
                    "column_name": column,
                    "key_sequence": sequence,
                    "key_name": f"{table}_pkey",
                }
            )
    return pa.Table.from_pylist(rows, schema=PRIMARY_KEYS_SCHEMA)


def foreign_keys() -> pa.Table:
    """Mirrored tables declare no foreign keys."""
    return FOREIGN_KEYS_SCHEMA.empty_table()


def _catalog_matches(ns: Namespace, catalog: str | None) -> bool:
    # Absent: any catalog. "" asks for tables without a catalog, and every table has one.
    return catalog is None or catalog == ns.catalog


# --- CommandGetSqlInfo ------------------------------------------------------------------------

_STRING, _BOOL, _BIGINT, _INT32, _STRING_LIST, _INT32_MAP = range(6)
SqlInfoValue = str | bool | int | list[str] | dict[int, list[int]]


@cache
def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0+unknown"


def sql_info_values() -> dict[int, tuple[int, SqlInfoValue]]:
    """Every SqlInfo this server answers: code → (union type code, value)."""
    s = pb.SqlInfo
    return {
        s.FLIGHT_SQL_SERVER_NAME: (_STRING, SERVER_NAME),
        s.FLIGHT_SQL_SERVER_VERSION: (_STRING, server_version()),
        s.FLIGHT_SQL_SERVER_ARROW_VERSION: (_STRING, pa.__version__),
        s.FLIGHT_SQL_SERVER_READ_ONLY: (_BOOL, True),
        s.FLIGHT_SQL_SERVER_SQL: (_BOOL, True),
        s.FLIGHT_SQL_SERVER_SUBSTRAIT: (_BOOL, False),
        # Transactions are read-only and hold nothing; supporting them lets DB-API clients
        # leave autocommit, which ADBC tries on connect.
        s.FLIGHT_SQL_SERVER_TRANSACTION: (_INT32, pb.SQL_SUPPORTED_TRANSACTION_TRANSACTION),
        s.FLIGHT_SQL_SERVER_CANCEL: (_BOOL, True),  # CancelFlightInfo stops result streams
        s.FLIGHT_SQL_SERVER_BULK_INGESTION: (_BOOL, False),
        s.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: (_BOOL, False),
        s.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: (_INT32, 0),
        s.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: (_INT32, 0),
        s.SQL_DDL_CATALOG: (_BOOL, False),
        s.SQL_DDL_SCHEMA: (_BOOL, False),
        s.SQL_DDL_TABLE: (_BOOL, False),
        s.SQL_IDENTIFIER_CASE: (_INT32, pb.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        s.SQL_IDENTIFIER_QUOTE_CHAR: (_STRING, '"'),
        s.SQL_QUOTED_IDENTIFIER_CASE: (_INT32, pb.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        s.SQL_ALL_TABLES_ARE_SELECTABLE: (_BOOL, True),
        s.SQL_NULL_ORDERING: (_INT32, pb.SQL_NULLS_SORTED_AT_END),
        s.SQL_SEARCH_STRING_ESCAPE: (_STRING, "\\"),
        s.SQL_SUPPORTS_COLUMN_ALIASING: (_BOOL, True),
        s.SQL_NULL_PLUS_NULL_IS_NULL: (_BOOL, True),
        s.SQL_SCHEMA_TERM: (_STRING, "schema"),
        s.SQL_CATALOG_TERM: (_STRING, "catalog"),
        s.SQL_CATALOG_AT_START: (_BOOL, True),
        s.SQL_SELECT_FOR_UPDATE_SUPPORTED: (_BOOL, False),
        s.SQL_STORED_PROCEDURES_SUPPORTED: (_BOOL, False),
        s.SQL_CORRELATED_SUBQUERIES_SUPPORTED: (_BOOL, True),
        s.SQL_TRANSACTIONS_SUPPORTED: (_BOOL, True),
        s.SQL_DEFAULT_TRANSACTION_ISOLATION: (_INT32, pb.SQL_TRANSACTION_READ_COMMITTED),
        s.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS: (
            _INT32,
            1 << pb.SQL_TRANSACTION_READ_COMMITTED,
        ),
        s.SQL_BATCH_UPDATES_SUPPORTED: (_BOOL, False),
        s.SQL_SAVEPOINTS_SUPPORTED: (_BOOL, False),
        s.SQL_NAMED_PARAMETERS_SUPPORTED: (_BOOL, False),
        s.SQL_KEYWORDS: (_STRING_LIST, ["DESCRIBE", "PIVOT", "QUALIFY", "SUMMARIZE"]),
    }


def sql_info(codes: Iterable[int]) -> pa.Table:
    """Rows for the requested codes (all when none are named); unknown codes are skipped."""
    known = sql_info_values()
    wanted = sorted(known) if not codes else [c for c in dict.fromkeys(codes) if c in known]
    child_values: list[list[SqlInfoValue]] = [[] for _ in range(6)]
    type_ids: list[int] = []
    offsets: list[int] = []
    for code in wanted:
        type_id, value = known[code]
        type_ids.append(type_id)
        offsets.append(len(child_values[type_id]))
        child_values[type_id].append(value)
    children = [
        pa.array(list(v.items()) if isinstance(v, dict) else v for v in values).cast(field.type)
        if values
        else pa.array([], field.type)
        for values, field in zip(child_values, SQL_INFO_VALUE_TYPE, strict=True)
    ]
    value = pa.Array.from_buffers(
        SQL_INFO_VALUE_TYPE,
        len(wanted),
        [
            None,
            pa.array(type_ids, pa.int8()).buffers()[1],
            pa.array(offsets, pa.int32()).buffers()[1],
        ],
        children=children,
    )
    return pa.Table.from_arrays([pa.array(wanted, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


# --- CommandGetXdbcTypeInfo -------------------------------------------------------------------


@dataclass(frozen=True)
class _XdbcType:
    name: str
    data_type: int
    column_size: int | None = None
    literal_prefix: str | None = None
    literal_suffix: str | None = None
    create_params: list[str] | None = None
    case_sensitive: bool = False
    searchable: int = pb.SEARCHABLE_BASIC
    numeric: bool = False
    fixed_prec_scale: bool = False
    scale: tuple[int, int] | None = None
    sql_data_type: int | None = None
    datetime_subcode: int | None = None
    radix: int | None = None


_XDBC_TYPES = (
    _XdbcType("BOOLEAN", pb.XDBC_BIT, 1),
    _XdbcType("BIGINT", pb.XDBC_BIGINT, 19, numeric=True, scale=(0, 0), radix=10),
    _XdbcType("BLOB", pb.XDBC_VARBINARY, None, "'", "'::BLOB"),
    _XdbcType(
        "DECIMAL", pb.XDBC_DECIMAL, 38, create_params=["precision", "scale"], numeric=True,
        fixed_prec_scale=True, scale=(0, 38), radix=10,
    ),
    _XdbcType("INTEGER", pb.XDBC_INTEGER, 10, numeric=True, scale=(0, 0), radix=10),
    _XdbcType("DOUBLE", pb.XDBC_DOUBLE, 53, numeric=True, radix=2),
    _XdbcType("JSON", pb.XDBC_VARCHAR, None, "'", "'", case_sensitive=True,
              searchable=pb.SEARCHABLE_FULL),
    _XdbcType("VARCHAR", pb.XDBC_VARCHAR, None, "'", "'", case_sensitive=True,
              searchable=pb.SEARCHABLE_FULL),
    _XdbcType("DATE", pb.XDBC_DATE, 10, "DATE '", "'", sql_data_type=pb.XDBC_DATETIME,
              datetime_subcode=pb.XDBC_SUBCODE_DATE),
    _XdbcType("TIMESTAMP", pb.XDBC_TIMESTAMP, 26, "TIMESTAMP '", "'",
              sql_data_type=pb.XDBC_DATETIME, datetime_subcode=pb.XDBC_SUBCODE_TIMESTAMP),
)  # fmt: skip


def xdbc_type_info(cmd: pb.CommandGetXdbcTypeInfo) -> pa.Table:
    """The SQL types results use, ordered by data_type then type_name."""
    wanted = cmd.data_type if cmd.HasField("data_type") else None
    rows = [
        {
            "type_name": t.name,
            "data_type": t.data_type,
            "column_size": t.column_size,
            "literal_prefix": t.literal_prefix,
            "literal_suffix": t.literal_suffix,
            "create_params": t.create_params,
            "nullable": pb.NULLABILITY_NULLABLE,
            "case_sensitive": t.case_sensitive,
            "searchable": t.searchable,
            "unsigned_attribute": False if t.numeric else None,
            "fixed_prec_scale": t.fixed_prec_scale,
            "auto_increment": False if t.numeric else None,
            "local_type_name": t.name,
            "minimum_scale": t.scale[0] if t.scale else None,
            "maximum_scale": t.scale[1] if t.scale else None,
            "sql_data_type": t.sql_data_type if t.sql_data_type is not None else t.data_type,
            "datetime_subcode": t.datetime_subcode,
            "num_prec_radix": t.radix,
            "interval_precision": None,
        }
        for t in sorted(_XDBC_TYPES, key=lambda t: (t.data_type, t.name))
        if wanted is None or t.data_type == wanted
    ]
    return pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)


def sql_type_name(type_: pa.DataType) -> str:
    """The DuckDB name of an Arrow type, for ARROW:FLIGHT:SQL:TYPE_NAME."""
    t = pa.types
    checks = (
        (t.is_boolean, "BOOLEAN"),
        (t.is_int8, "TINYINT"),
        (t.is_int16, "SMALLINT"),
        (t.is_int32, "INTEGER"),
        (t.is_int64, "BIGINT"),
        (t.is_uint8, "UTINYINT"),
        (t.is_uint16, "USMALLINT"),
        (t.is_uint32, "UINTEGER"),
        (t.is_uint64, "UBIGINT"),
        (t.is_float32, "FLOAT"),
        (t.is_float64, "DOUBLE"),
        (t.is_decimal, "DECIMAL"),
        (t.is_string, "VARCHAR"),
        (t.is_large_string, "VARCHAR"),
        (t.is_string_view, "VARCHAR"),
        (t.is_binary, "BLOB"),
        (t.is_large_binary, "BLOB"),
        (t.is_date, "DATE"),
        (t.is_timestamp, "TIMESTAMP"),
        (t.is_time, "TIME"),
        (t.is_list, "LIST"),
        (t.is_struct, "STRUCT"),
        (t.is_map, "MAP"),
    )
    for check, name in checks:
        if check(type_):
            return name
    return str(type_).upper()
