"""The statement check's allow-lists and limits, on their own (no engine, no server)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlglot
from sqlglot import exp

from flightsrv.config import QueryLimits
from flightsrv.flightsql import functions, sqlcheck

DIALECTS = ("duckdb", "sqlite", "postgres")


def check(sql: str, limits: QueryLimits = sqlcheck.DEFAULT_LIMITS) -> sqlcheck.CheckedQuery:
    return sqlcheck.check(sql, "dynamirror", "public", limits)


# Calls written the way DuckDB users (and BI tools speaking DuckDB) write them.
SAFE_CALLS = [
    "count(x)", "count(*)", "count(DISTINCT x)", "sum(x)", "avg(x)", "mean(x)", "min(x)",
    "max(x)", "coalesce(x, 1)", "ifnull(x, 1)", "nullif(x, 1)", "lower(s)", "upper(s)",
    "length(s)", "len(s)", "substr(s, 1, 2)", "substring(s, 1, 2)", "round(x, 1)", "abs(x)",
    "ceil(x)", "floor(x)", "date_trunc('day', ts)", "date_part('year', ts)",
    "date_diff('day', ts, ts)", "strftime(ts, '%Y')", "strptime(s, '%Y')",
    "extract(year FROM ts)", "CAST(x AS INTEGER)", "x::VARCHAR", "TRY_CAST(s AS INT)",
    "CASE WHEN x > 1 THEN 'a' ELSE 'b' END", "list_value(1, 2)", "[1, 2]",
    "struct_pack(a := 1)", "{'a': 1}", "json_extract(j, '$.a')", "j->'$.a'", "j->>'a'",
    "json_extract_string(j, '$.a')", "regexp_matches(s, 'a')", "regexp_replace(s, 'a', 'b')",
    "regexp_extract(s, 'a')", "concat(s, 't')", "s || 't'", "concat_ws(',', s, s)",
    "row_number() OVER ()", "rank() OVER (ORDER BY x)", "dense_rank() OVER (ORDER BY x)",
    "lag(x) OVER (ORDER BY x)", "lead(x, 2) OVER (ORDER BY x)", "ntile(4) OVER (ORDER BY x)",
    "first_value(x) OVER (ORDER BY x)", "string_agg(s, ',')", "group_concat(s)", "list(x)",
    "array_agg(x)", "list_contains([1], 1)", "epoch_ms(1)", "epoch(ts)", "now()",
    "current_timestamp", "current_date", "today()", "count_if(x > 1)",
    "approx_count_distinct(x)", "median(x)", "mode(x)", "quantile_cont(x, 0.5)",
    "quantile_disc(x, 0.5)", "percentile_cont(0.5) WITHIN GROUP (ORDER BY x)", "stddev(x)",
    "stddev_pop(x)", "variance(x)", "corr(x, x)", "bool_and(x > 1)", "any_value(x)",
    "first(x)", "arg_max(s, x)", "max_by(s, x)", "greatest(x, 1)", "least(x, 1)",
    "trim(s)", "ltrim(s)", "replace(s, 'a', 'b')", "split_part(s, ',', 1)",
    "starts_with(s, 'a')", "contains(s, 'a')", "position('a' IN s)", "strpos(s, 'a')",
    "left(s, 2)", "right(s, 2)", "lpad(s, 5, '0')", "reverse(s)", "md5(s)", "hash(s)",
    "typeof(x)", "uuid()", "random()", "power(x, 2)", "sqrt(x)", "ln(x)", "log10(x)",
    "x % 2", "make_date(2024, 1, 1)", "make_timestamp(2024, 1, 1, 0, 0, 0)", "to_timestamp(1)",
    "time_bucket(INTERVAL 1 HOUR, ts)",
    "year(ts)", "month(ts)", "dayofweek(ts)", "last_day(ts)", "age(ts)",
    "to_json(x)", "array_length([1])", "unnest([1, 2])", "flatten([[1]])",
    "list_transform([1], v -> v + 1)", "list_filter([1], v -> v > 0)", "cardinality(map())",
    "generate_series(1, 3)", "range(3)", "if(x > 1, 'a', 'b')", "format('{}', x)",
]  # fmt: skip


@pytest.mark.parametrize("call", SAFE_CALLS)
def test_common_functions_are_allowed_on_every_engine(call: str) -> None:
    checked = check(f"SELECT {call} FROM t")
    for dialect in DIALECTS:
        checked.require_safe_for(dialect)
        checked.sql(dialect)


# The security review's list, and more of the same families.
DANGEROUS_NAMES = [
    # DuckDB
    "getenv", "current_setting", "read_csv", "read_csv_auto", "read_parquet", "read_json",
    "read_json_auto", "read_text", "read_blob", "read_ndjson", "parquet_scan", "glob", "query",
    "query_table", "sniff_csv", "json_execute_serialized_sql", "checkpoint", "force_checkpoint",
    "duckdb_settings", "duckdb_tables", "duckdb_secrets", "duckdb_extensions",
    "pragma_version", "pragma_table_info", "which_secret", "nextval", "currval", "setseed",
    "version", "getvariable", "delta_scan", "iceberg_scan", "sqlite_scan", "postgres_scan",
    # PostgreSQL
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_sleep",
    "pg_terminate_backend", "pg_reload_conf", "pg_typeof", "lo_import", "lo_export", "lo_get",
    "set_config", "query_to_xml", "table_to_xml", "cursor_to_xml", "database_to_xml",
    "schema_to_xml", "query_to_xml_and_xmlschema", "xpath", "xpath_exists", "dblink",
    "dblink_exec", "txid_current", "txid_current_snapshot", "inet_client_addr",
    "inet_server_addr", "inet_server_port", "current_user", "session_user", "has_table_privilege",
    "lastval", "to_regclass",
    # SQLite
    "fts3_tokenizer", "load_extension", "sqlite_version", "sqlite_source_id",
    "sqlite_compileoption_used", "sqlite_offset", "zeroblob", "randomblob", "readfile",
    "writefile", "edit", "changes", "last_insert_rowid", "total_changes",
]  # fmt: skip


@pytest.mark.parametrize("name", DANGEROUS_NAMES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_dangerous_functions_are_refused_on_every_engine(dialect: str, name: str) -> None:
    args = "()" if name in ("version", "session_user") else "('x')"  # more: a syntax error
    for sql in (f"SELECT {name}{args} FROM t", f"SELECT * FROM t, {name}{args}"):
        with pytest.raises(sqlcheck.ReadOnlyViolation) as caught:
            check(sql).require_safe_for(dialect)
        assert "not allowed" in str(caught.value)
        # sqlglot may name a function it knows its own way (version → current_version).
        assert name.split("_")[-1] in str(caught.value)


_DANGEROUS = re.compile(
    r"^(pg_|lo_|sqlite_|duckdb_|pragma_|read_|dblink|txid_|inet_|xpath)|_to_xml|_scan$|"
    r"^(getenv|current_setting|set_config|glob|query|query_table|sniff_csv|checkpoint|"
    r"json_execute_serialized_sql|which_secret|nextval|currval|lastval|setseed|version|"
    r"fts3_tokenizer|load_extension|zeroblob|randomblob|readfile|writefile|edit)$"
)


def test_no_allow_list_holds_a_dangerous_name() -> None:
    for dialect in DIALECTS:
        assert not {n for n in functions.allowed_for(dialect) if _DANGEROUS.search(n)}
    typed = {n.lower() for cls in sqlcheck.allowed_classes() for n in cls.sql_names()}
    assert not {n for n in typed if _DANGEROUS.search(n)}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_typed_functions_are_written_without_a_dangerous_name(dialect: str) -> None:
    # What sqlglot writes for a listed function is what the engine runs: check every listed
    # name sqlglot knows, as each engine gets it.
    written: set[str] = set()
    for name in sorted(functions.COMMON):
        for args in ("x", "x, y", "x, y, z", ""):
            try:
                tree = sqlglot.parse_one(f"SELECT {name}({args})", read="duckdb")
            except sqlglot.errors.SqlglotError:
                continue
            if not isinstance(tree.selects[0], exp.Anonymous):
                sql = tree.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.IGNORE)
                written.update(m.lower() for m in re.findall(r"(\w+)\(", sql))
            break
    assert written and not {n for n in written if _DANGEROUS.search(n)}


def test_functions_sqlglot_does_not_know_are_checked_per_engine() -> None:
    checked = check("SELECT julianday('2024-01-01'), now() FROM t")
    assert checked.passed_through == {"julianday", "now"}
    checked.require_safe_for("sqlite")
    for dialect in ("duckdb", "postgres"):
        with pytest.raises(sqlcheck.ReadOnlyViolation, match=rf"julianday\(\).*\({dialect}\)"):
            checked.require_safe_for(dialect)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM range(3)",
        "SELECT * FROM range(1, 9, 2) r",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM unnest([1, 2])",
        "SELECT * FROM t, unnest(t.l) AS u(x)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
        "SELECT * FROM r",
    ],
)
def test_generators_and_ctes_are_relations_a_query_may_name(sql: str) -> None:
    check(sql)


@pytest.mark.parametrize("relation", ["system.main.duckdb_tables", "other.public.t"])
def test_relations_in_other_catalogs_are_refused(relation: str) -> None:
    with pytest.raises(sqlcheck.ReadOnlyViolation, match=f"relation {relation} is not allowed"):
        check(f"SELECT * FROM {relation}")


@pytest.mark.parametrize(
    "relation",
    ["pg_catalog.pg_shadow", "information_schema.tables", "main.sqlite_master", "temp.x"],
)
def test_a_relation_of_another_schema_becomes_one_quoted_name(relation: str) -> None:
    # A dataset may be named so (schema.table); if none is, the catalog refuses the name. The
    # engine is never given a schema to look in, only the one quoted name.
    checked = check(f"SELECT * FROM {relation}")
    assert checked.tables == (relation,)
    table = relation.split(".")[1]
    assert checked.sql("postgres") == f'SELECT * FROM "{relation}" AS {table}'


# -- limits -----------------------------------------------------------------------------------


def test_a_statement_over_the_size_limit_is_refused_before_parsing() -> None:
    limits = QueryLimits(max_statement_bytes=1000)
    check("SELECT 1" + " " * 990, limits)
    with pytest.raises(sqlcheck.StatementTooLarge) as caught:
        check("SELECT '" + "é" * 500 + "'", limits)  # 1009 bytes, 509 characters
    assert str(caught.value) == (
        "the statement is 1009 bytes, over the limit of 1000 bytes "
        "(runtime.query.max_statement_size)"
    )


def test_a_statement_of_too_many_tokens_is_refused() -> None:
    within = "SELECT 1 WHERE 1=1" + " AND 1=1" * ((sqlcheck.MAX_TOKENS - 10) // 4)
    check(within)
    with pytest.raises(sqlcheck.StatementTooLarge, match=f"more than {sqlcheck.MAX_TOKENS} tokens"):
        check(within + " AND 1=1" * 10)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 33 + "1" + ")" * 33,
        "SELECT " + "abs(" * 33 + "1" + ")" * 33,
        "SELECT " + "[" * 33 + "1" + "]" * 33,
        "SELECT " + "NOT " * 3000 + "1",  # deep without brackets: sqlglot's recursion
        "SELECT " + "CASE WHEN x THEN " * 300 + "1" + " END" * 300,
    ],
    ids=["parentheses", "calls", "lists", "NOT chain", "CASE chain"],
)
def test_a_statement_nested_too_deeply_is_refused(sql: str) -> None:
    with pytest.raises(sqlcheck.StatementTooLarge, match="nested too deeply"):
        check(sql)


def test_nesting_within_the_limit_is_fine() -> None:
    depth = sqlcheck.MAX_DEPTH
    checked = check("SELECT " + "abs(" * (depth - 1) + "(x)" + ")" * (depth - 1) + " FROM t")
    for dialect in DIALECTS:
        checked.sql(dialect)


def test_brackets_in_text_and_comments_do_not_count() -> None:
    check("SELECT '" + "(" * 100 + "' AS \"" + "[" * 100 + '" -- ' + "(" * 100)


def test_checking_longer_than_parse_timeout_is_refused() -> None:
    limits = QueryLimits(parse_timeout=timedelta(microseconds=1))
    with pytest.raises(sqlcheck.StatementTooLarge) as caught:
        check("SELECT 1 WHERE 1=1" + " AND 1=1" * 1000, limits)
    assert "took longer than 1e-06 s (runtime.query.parse_timeout)" in str(caught.value)


def test_many_parameters_in_a_long_condition() -> None:
    # One walk up from each placeholder would be quadratic here; the check is linear.
    checked = check("SELECT * FROM t WHERE x = ?" + " AND x = ?" * 2399)
    assert checked.param_count == 2400
    assert not checked.typed_by_values


def test_a_long_with_is_checked_in_time() -> None:
    sql = "WITH " + ",".join(f"c{i} AS (SELECT * FROM t)" for i in range(1000)) + " SELECT 1"
    sql += " FROM c999"
    assert check(sql).tables == ("t",)
