"""Domain exceptions → the pyarrow exceptions that carry the right gRPC status code.

pyarrow.flight has no NOT_FOUND or INVALID_ARGUMENT exception of its own; the Arrow status
behind ``pa.ArrowKeyError`` reaches clients as NOT_FOUND and ``pa.ArrowInvalid`` as
INVALID_ARGUMENT (checked against the ADBC Flight SQL driver, which reports them as ADBC
NOT_FOUND and INVALID_ARGUMENT). ``FlightUnauthorizedError`` is gRPC PERMISSION_DENIED (ADBC
UNAUTHORIZED), ``FlightUnavailableError`` UNAVAILABLE (ADBC IO) and ``FlightCancelledError``
CANCELLED (ADBC CANCELLED), ``FlightTimedOutError`` DEADLINE_EXCEEDED (ADBC TIMEOUT).
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.flight as flight

from flightsrv.catalog import CrossEngineQuery, DatasetNotReady, TableNotFound
from flightsrv.flightsql.results import SchemaChanged
from flightsrv.flightsql.running import QueryCancelled, QueryTimedOut, ServerStopping
from flightsrv.flightsql.sqlcheck import ReadOnlyViolation, SqlSyntaxError
from flightsrv.flightsql.statements import InvalidHandle
from sync.accelerators.query import QueryError

log = logging.getLogger("flightsrv.flightsql")


class Unsupported(Exception):
    """A Flight SQL feature this server does not implement (gRPC UNIMPLEMENTED)."""


class BadRequest(Exception):
    """A malformed or inconsistent request (gRPC INVALID_ARGUMENT)."""


def as_flight_error(error: Exception) -> Exception:
    """The exception to raise to a Flight client for ``error``."""
    message = str(error)
    if isinstance(error, ReadOnlyViolation):
        return flight.FlightUnauthorizedError(message)
    if isinstance(error, TableNotFound):
        return pa.ArrowKeyError(message)
    if isinstance(error, (DatasetNotReady, SchemaChanged)):
        return flight.FlightUnavailableError(message)
    if isinstance(error, CrossEngineQuery):
        return pa.ArrowInvalid(f"cross-engine query: {message}")
    if isinstance(error, (QueryError, SqlSyntaxError, InvalidHandle, BadRequest)):
        return pa.ArrowInvalid(message)
    if isinstance(error, Unsupported):
        return pa.ArrowNotImplementedError(message)
    if isinstance(error, QueryCancelled):
        return flight.FlightCancelledError(message)
    if isinstance(error, QueryTimedOut):
        return flight.FlightTimedOutError(message)
    if isinstance(error, ServerStopping):
        return flight.FlightUnavailableError(message)
    return error


_DOMAIN_ERRORS = (
    ReadOnlyViolation,
    TableNotFound,
    DatasetNotReady,
    SchemaChanged,
    CrossEngineQuery,
    QueryError,
    SqlSyntaxError,
    InvalidHandle,
    BadRequest,
    Unsupported,
    QueryCancelled,
    QueryTimedOut,
    ServerStopping,
)


def client_error(call: str, error: Exception) -> Exception:
    """What to raise to the client for ``error`` raised while serving ``call``.

    Callers raise the result ``from None`` straight from the RPC method: pyarrow appends the
    Python traceback to the gRPC message of non-Flight errors, so the shorter it is the better.
    """
    if isinstance(error, _DOMAIN_ERRORS):
        log.info("%s refused: %s: %s", call, type(error).__name__, error)
        return as_flight_error(error)
    if not isinstance(error, (flight.FlightError, pa.ArrowException)):
        log.error("%s failed", call, exc_info=error)
    return error
