"""What the PostgreSQL engine accepts and is, importable without its optional driver (config is
validated, and settings compared, before any engine opens)."""

from __future__ import annotations

from collections.abc import Mapping

from sync.accelerators.spec import Connection, EngineSpec, ParamError
from sync.schema import TypeSupport

# Arrays of one scalar type; maps, and lists of mixed or nested values, are jsonb.
TYPE_SUPPORT = TypeSupport(structs=False, lists="uniform")
MAX_NAME_BYTES = 63  # PostgreSQL cuts longer identifiers short

SPICEPOD_PARAMS = {
    "pg_host": "host",
    "pg_port": "port",
    "pg_db": "dbname",
    "pg_user": "user",
    "pg_pass": "password",
    "pg_sslmode": "sslmode",
    "pg_sslrootcert": "sslrootcert",
}
READER_PARAMS = {"pg_reader_user": "user", "pg_reader_pass": "password"}


def spicepod_connection(params: Mapping[str, str]) -> dict[str, str]:
    """libpq connection keywords from Spice's ``pg_*`` acceleration params.

    ``pg_connection_string`` (a libpq key=value string or ``postgresql://`` URI) is the base;
    ``pg_host``, ``pg_port``, ``pg_db``, ``pg_user``, ``pg_pass``, ``pg_sslmode`` and
    ``pg_sslrootcert`` override its values. Unset keywords keep libpq's defaults.

    Raises:
        ImportError: psycopg is not installed (it parses the connection string).
        psycopg.ProgrammingError: ``pg_connection_string`` is not a valid connection string.
    """
    import psycopg

    connection: dict[str, str] = {}
    if params.get("pg_connection_string"):
        parsed = psycopg.conninfo.conninfo_to_dict(params["pg_connection_string"])
        connection.update({k: str(v) for k, v in parsed.items() if v is not None})
    for key, keyword in SPICEPOD_PARAMS.items():
        if params.get(key):
            connection[keyword] = params[key]
    return connection


def _connection(params: Mapping[str, str]) -> Connection:
    reader = {keyword: params[key] for key, keyword in READER_PARAMS.items() if key in params}
    if reader and "user" not in reader:
        raise ParamError("pg_reader_pass", "goes with pg_reader_user")
    import psycopg  # not installed: the ImportError says so, and config names the extra

    try:
        keywords = spicepod_connection(params)
    except psycopg.Error as e:  # conninfo errors name the problem
        raise ParamError("pg_connection_string", str(e)) from e
    return Connection(keywords, reader or None)


def _location(c: Mapping[str, str]) -> str:
    user = f"{c['user']}@" if c.get("user") else ""
    where = f"{c.get('host') or 'localhost'}:{c.get('port') or 5432}"
    return f"postgres://{user}{where}/{c.get('dbname') or ''}"


SPEC = EngineSpec(
    name="postgres",
    title="PostgreSQL",
    accelerator="sync.accelerators.postgres:PostgresAccelerator",
    modes=("file",),
    modes_note="keeps its data in the server",
    type_support=TYPE_SUPPORT,
    dialect="postgres",
    placeholder="$",
    shared_readers=True,
    params=("pg_connection_string", *SPICEPOD_PARAMS, *READER_PARAMS),
    connection=_connection,
    server_location=_location,
    extra="postgres",
    max_identifier_bytes=MAX_NAME_BYTES,
)
