"""flightsql-dbapi and its SQLAlchemy dialect as clients: queries, prepared statements with
parameters (a client that keeps its prepared handle), and reflection through Flight SQL
metadata calls."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.flightsrv.flightsql.engines import Env


def test_flightsql_dbapi_and_sqlalchemy_dialect(env: Env) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "tests.flightsrv.flightsql.dbapi_client",
            str(env.server.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["rows"] == [
        [1, "ada", 10.5],
        [2, "bob", 20.0],
        [3, "cy", 7.25],
        [4, "ada", 99.0],
        [5, "dee", 0.5],
    ]
    assert seen["description"] == [["id", "BIGINT"], ["customer", "TEXT"], ["amount", "FLOAT"]]
    assert seen["bound"] == [[1], [4]]
    assert seen["rebound"] == [[2]]
    assert seen["sql_info"] == {
        "0": "dynamirror",
        "2": seen["sql_info"]["2"],
        "3": True,
        "504": '"',
    }
    assert seen["schemas"] == ["public"]
    assert seen["tables"] == ["big", "events", "items", "orders", "pending"]
    assert seen["columns"] == [
        ["id", "BIGINT"],
        ["customer", "TEXT"],
        ["amount", "FLOAT"],
        ["paid", "BOOLEAN"],
        ["note", "TEXT"],
        ["payload", "BINARY"],
    ]
    assert seen["has_table"] == [True, False]
    assert seen["orm"] == [[1, 10.5], [4, 99.0]]
    assert seen["text"] == [[4]]
