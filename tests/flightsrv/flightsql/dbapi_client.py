"""A flightsql-dbapi (and SQLAlchemy) client session, run in its own process by
test_flightsql_dbapi.py: flightsql-dbapi registers its own Flight SQL protobufs, which clash
with the server's in one process. Prints what it saw as JSON.

Usage: python -W error -m tests.flightsrv.flightsql.dbapi_client PORT
"""

from __future__ import annotations

import json
import sys
from typing import Any

import flightsql
from flightsql import FlightSQLClient
from sqlalchemy import MetaData, Table, create_engine, inspect, select, text


def main(port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = FlightSQLClient(host="127.0.0.1", port=port, insecure=True)
    with flightsql.connect(client) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id, customer, amount FROM orders ORDER BY id")
        seen["rows"] = cursor.fetchall()
        seen["description"] = [(name, kind.__name__) for name, kind in cursor.description]
        # Prepared with a parameter: this client keeps its prepared handle after binding.
        cursor.execute("SELECT id FROM orders WHERE customer = ? ORDER BY id", ["ada"])
        seen["bound"] = cursor.fetchall()
        cursor.execute("SELECT id FROM orders WHERE customer = ? ORDER BY id", ["bob"])
        seen["rebound"] = cursor.fetchall()
        seen["sql_info"] = {
            str(k): v for k, v in conn.flightsql_get_sql_info([0, 2, 3, 504]).items()
        }

    engine = create_engine(f"datafusion://127.0.0.1:{port}?insecure=true")
    inspector = inspect(engine)
    seen["schemas"] = inspector.get_schema_names()
    seen["tables"] = inspector.get_table_names()
    seen["columns"] = [(c["name"], str(c["type"])) for c in inspector.get_columns("orders")]
    seen["has_table"] = [inspector.has_table("orders"), inspector.has_table("nope")]
    orders = Table("orders", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        query = select(orders.c.id, orders.c.amount).where(orders.c.customer == "ada")
        seen["orm"] = [list(row) for row in conn.execute(query.order_by(orders.c.id))]
        seen["text"] = [list(r) for r in conn.execute(text("SELECT count(*) AS n FROM events"))]
    engine.dispose()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
