"""Arrow Flight SQL serving of the mirrored tables (read-only, DuckDB SQL dialect).

Modules: ``catalog`` (the interface to the served datasets the server needs), ``server`` (the
Flight server), ``queries`` (planning and running statements), ``sqlcheck`` (read-only check,
table names, transpiling), ``statements`` (stateless handles and tickets), ``metadata``
(catalog metadata results), ``results`` (batch sizing and schema conformance), ``errors``
(gRPC status mapping).
"""

from __future__ import annotations

from flightsrv.flightsql.server import CATALOG_NAME, DEFAULT_LOCATION, SCHEMA_NAME, FlightSqlServer

__all__ = ["CATALOG_NAME", "DEFAULT_LOCATION", "SCHEMA_NAME", "FlightSqlServer"]
