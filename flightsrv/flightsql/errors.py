"""Domain exceptions → the one-line Flight errors a client receives.

Only :class:`pyarrow.flight.FlightError` subclasses reach a client as their message alone.
pyarrow converts any other exception a handler raises (``pa.ArrowInvalid``, ``KeyError``…) into
an Arrow status carrying a ``PythonErrorDetail``, and Arrow Flight's gRPC transport appends
``". Detail: "`` and that detail's text to the gRPC message: the formatted traceback, with
pyarrow's frame and ours (file paths, source lines). This holds whatever the exception's
``__traceback__``/``__context__``: at least pyarrow's own frame is always there. Flight errors
become statuses of their own (``_flight_error_to_status``), whose detail is their code name.

So every error leaves a handler as a Flight error, which limits the codes to those Flight has:
refusals by the allow-list (a write, a function, a relation or table that is not served) are
PERMISSION_DENIED (ADBC UNAUTHORIZED, a ``ProgrammingError``); a dataset not ready or a result
whose schema changed or a server shutting down UNAVAILABLE (ADBC IO); a cancelled query
CANCELLED; one past ``runtime.query.timeout`` DEADLINE_EXCEEDED (ADBC TIMEOUT); other requests the
server cannot serve (syntax, engine errors, malformed or unsupported requests, statements over
the size, complexity or parse-time limits) UNKNOWN (``FlightServerError``, ADBC UNKNOWN, an
``OperationalError``); anything unexpected INTERNAL, with its details in the server log only.
Flight has no INVALID_ARGUMENT or NOT_FOUND error a Python server can raise cleanly.
"""

from __future__ import annotations

import logging

import pyarrow.flight as flight

from flightsrv.flightsql.catalog import CrossEngineQuery, DatasetNotReady, TableNotFound
from flightsrv.flightsql.results import SchemaChanged
from flightsrv.flightsql.running import QueryCancelled, QueryTimedOut, ServerStopping
from flightsrv.flightsql.sqlcheck import ReadOnlyViolation, SqlSyntaxError, StatementTooLarge
from flightsrv.flightsql.statements import InvalidHandle
from sync.accelerators.query import QueryError

log = logging.getLogger("flightsrv.flightsql")

INTERNAL_MESSAGE = "internal error (see the server log)"


class Unsupported(Exception):
    """A Flight SQL feature this server does not implement."""


class BadRequest(Exception):
    """A malformed or inconsistent request."""


# Domain error → the Flight error it reaches the client as (first match wins).
_FLIGHT_ERRORS: tuple[tuple[tuple[type[Exception], ...], type[flight.FlightError]], ...] = (
    ((ReadOnlyViolation, TableNotFound), flight.FlightUnauthorizedError),
    ((DatasetNotReady, SchemaChanged, ServerStopping), flight.FlightUnavailableError),
    ((QueryCancelled,), flight.FlightCancelledError),
    ((QueryTimedOut,), flight.FlightTimedOutError),
    (
        (
            SqlSyntaxError,
            StatementTooLarge,
            QueryError,
            CrossEngineQuery,
            InvalidHandle,
            BadRequest,
            Unsupported,
        ),
        flight.FlightServerError,
    ),
)
_PREFIXES: dict[type[Exception], str] = {CrossEngineQuery: "cross-engine query: "}


def client_error(call: str, error: Exception) -> flight.FlightError:
    """What to raise to the client for ``error`` raised while serving ``call``: a one-line
    Flight error (see the module docstring); the details go to the log.

    Refused requests are logged at INFO, with their traceback at DEBUG; unexpected errors at
    ERROR with their traceback, and the client is told only that there was one.
    """
    if isinstance(error, flight.FlightError):
        log.info("%s refused: %s", call, error)
        log.debug("%s: traceback of the refusal", call, exc_info=error)
        return type(error)(str(error))  # a fresh one: only the message reaches the client
    for kinds, flight_error in _FLIGHT_ERRORS:
        if isinstance(error, kinds):
            log.info("%s refused: %s: %s", call, type(error).__name__, error)
            log.debug("%s: traceback of the refusal", call, exc_info=error)
            prefix = next((p for k, p in _PREFIXES.items() if isinstance(error, k)), "")
            return flight_error(_one_line(prefix + str(error)))
    log.error("%s failed", call, exc_info=error)
    return flight.FlightInternalError(INTERNAL_MESSAGE)


def _one_line(message: str) -> str:
    """``message`` on one line (engine and parser messages may span several)."""
    return " ".join(message.split())
