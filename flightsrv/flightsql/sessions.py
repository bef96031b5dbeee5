"""Flight session options (``GetSessionOptions``, ``SetSessionOptions``, ``CloseSession``).

The server has one catalog holding one schema, so a session has nothing to remember: the
options ``catalog`` and ``schema`` always name them, setting either to its own value succeeds
(clients such as ADBC set the current catalog or schema before querying), and any other value
or option is refused per option, as the protocol asks. No session cookie is issued.
"""

from __future__ import annotations

from flightsrv.flightsql.metadata import Namespace
from flightsrv.proto import FlightActions_pb2 as fa

CATALOG_OPTION = "catalog"
SCHEMA_OPTION = "schema"


def options(ns: Namespace) -> fa.GetSessionOptionsResult:
    result = fa.GetSessionOptionsResult()
    result.session_options[CATALOG_OPTION].string_value = ns.catalog
    result.session_options[SCHEMA_OPTION].string_value = ns.schema
    return result


def set_options(ns: Namespace, request: fa.SetSessionOptionsRequest) -> fa.SetSessionOptionsResult:
    fixed = {CATALOG_OPTION: ns.catalog, SCHEMA_OPTION: ns.schema}
    result = fa.SetSessionOptionsResult()
    for name, value in request.session_options.items():
        if name not in fixed:
            result.errors[name].value = fa.SetSessionOptionsResult.INVALID_NAME
        elif (
            value.WhichOneof("option_value") != "string_value"
            or value.string_value.lower() != fixed[name].lower()
        ):
            result.errors[name].value = fa.SetSessionOptionsResult.INVALID_VALUE
    return result


def close() -> fa.CloseSessionResult:
    return fa.CloseSessionResult(status=fa.CloseSessionResult.CLOSED)
