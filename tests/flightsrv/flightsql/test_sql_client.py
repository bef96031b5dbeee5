"""``flightsrv sql``: tables for people, statements from a pipe or a prompt, errors in one line."""

from __future__ import annotations

import io
import subprocess
import sys

import pyarrow as pa

from flightsrv import sqlclient
from tests.flightsrv.flightsql.engines import Env


def test_one_query_prints_a_table_and_the_time(env: Env) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flightsrv", "sql", "--uri", env.uri,
         "SELECT id, customer, note, payload FROM orders WHERE id <= 2 ORDER BY id"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "+----+----------+-------+---------+",
        "| id | customer | note  | payload |",
        "+----+----------+-------+---------+",
        "|  1 | ada      | first | \\x0001  |",
        "|  2 | bob      | NULL  | \\x      |",
        "+----+----------+-------+---------+",
    ]
    assert lines[6].startswith("Time: ") and lines[6].endswith(" s. 2 rows.")


def test_piped_statements_run_until_eof_and_errors_do_not_stop_them(env: Env) -> None:
    script = "SELECT count(*) AS n\n  FROM orders;\nSELECT nope FROM orders;\nSELECT 7 AS seven"
    done = subprocess.run(
        [sys.executable, "-m", "flightsrv", "sql", "--uri", env.uri],
        input=script, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1  # one statement failed
    assert "| 5 |" in done.stdout and "|     7 |" in done.stdout
    assert done.stdout.count("Time: ") == 2
    (error,) = done.stderr.splitlines()
    assert error.startswith('error: Binder Error: Referenced column "nope" not found')


def test_unreachable_server_is_one_line(env: Env) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flightsrv", "sql", "--uri", "grpc://127.0.0.1:9", "SELECT 1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and "failed to connect" in done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_interactive_prompt(env: Env) -> None:
    client = sqlclient.SqlClient(env.uri)
    out, err = io.StringIO(), io.StringIO()
    code = sqlclient.run(
        client, None, stdin=_Terminal("SELECT 1 AS a,\n2 AS b;\n\\q\nSELECT 3;\n"), out=out, err=err
    )
    client.close()
    assert code == 0 and err.getvalue() == ""
    text = out.getvalue()
    assert text.startswith(sqlclient.PROMPT) and sqlclient.CONTINUATION in text
    assert "| 1 | 2 |" in text and "| 3 |" not in text  # \q ends the session


def test_statement_splitting() -> None:
    lines = ["SELECT 1;", "", "SELECT", " 2 ;  ", "SELECT ';' AS semi", "FROM t", "  "]
    assert list(sqlclient.statements(lines)) == [
        "SELECT 1",
        "SELECT\n 2",
        "SELECT ';' AS semi\nFROM t",
    ]


def test_format_table_limits_rows_and_keeps_duplicate_names() -> None:
    table = pa.table([pa.array(range(5)), pa.array(["x"] * 5)], names=["v", "v"])
    text = sqlclient.format_table(table, max_rows=2)
    assert text.splitlines() == [
        "+---+---+",
        "| v | v |",
        "+---+---+",
        "| 0 | x |",
        "| 1 | x |",
        "+---+---+",
        "(2 of 5 rows shown; --max-rows to see more)",
    ]
    long = sqlclient.format_table(pa.table({"s": ["y" * 100, "a\nb"]}))
    assert "y" * (sqlclient.MAX_CELL - 1) + "…" in long and "a\\nb" in long
