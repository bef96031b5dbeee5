"""The role PostgreSQL queries run as: it may SELECT the served tables and nothing else.

Clients' SQL is checked before it reaches the server, but the server must not be able to do more
than the check allows either: run as the configured (often superuser) role, a query could read
server files (``pg_read_file``), list the data directory or run SQL past the check
(``query_to_xml``). So queries connect as a reader role that owns nothing and is granted
``USAGE`` on the tables' schema and ``SELECT`` on each mirrored table as it is created, with
``default_transaction_read_only`` set on the role itself.

The role is either configured (``pg_reader_user`` / ``pg_reader_pass``) or managed here: named
after the writer (``<writer>_dynamirror_reader``), created or reset at start when the writer may
(``CREATEROLE``), its password derived from the writer's so that every runtime of one spicepod
agrees on it. When neither is possible, queries run as the writer, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

try:
    import psycopg
    from psycopg import sql as pgsql
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the postgres accelerator needs psycopg: pip install 'dynamirror[postgres]'"
    ) from e

from sync.accelerators.postgres_spec import MAX_NAME_BYTES

log = logging.getLogger(__name__)

MANAGED_SUFFIX = "_dynamirror_reader"


def managed_name(writer: str) -> str:
    """The managed reader role of ``writer`` (cut to PostgreSQL's 63 bytes)."""
    return (writer[: MAX_NAME_BYTES - len(MANAGED_SUFFIX)] + MANAGED_SUFFIX)[:MAX_NAME_BYTES]


def derived_password(writer_password: str | None) -> str:
    """The managed role's password: from the writer's when it has one (every runtime of the pod
    derives the same), else random for this process (the server then trusts the host anyway,
    or the writer authenticates otherwise)."""
    if not writer_password:
        return secrets.token_hex(24)
    digest = hashlib.sha256(f"dynamirror-reader:{writer_password}".encode()).hexdigest()
    return digest[:48]


def ensure_managed(cur: psycopg.Cursor[Any], name: str, password: str) -> bool:
    """Create ``name`` (or reset it) as a login role with no privileges of its own.

    Returns False when the writer may not manage roles; nothing is changed then.
    """
    role = pgsql.Identifier(name)
    attributes = pgsql.SQL(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD {}"
    ).format(pgsql.Literal(password))
    try:
        with cur.connection.transaction():
            # Runtimes starting together would race on the role's catalog row.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [name])
            exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]).fetchone()
            verb = pgsql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
            cur.execute(pgsql.SQL("{} {} {}").format(verb, role, attributes))
            cur.execute(
                pgsql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role)
            )
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def is_superuser(cur: psycopg.Cursor[Any], name: str) -> bool:
    row = cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = $1", [name]).fetchone()
    return bool(row and row[0])


def grant_schema(cur: psycopg.Cursor[Any], role: str) -> None:
    """Let ``role`` see the tables' schema (the writer's current one)."""
    cur.execute(
        pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            pgsql.Identifier(_current_schema(cur)), pgsql.Identifier(role)
        )
    )


def grant_table(cur: psycopg.Cursor[Any], role: str, table: str) -> None:
    cur.execute(
        pgsql.SQL("GRANT SELECT ON {} TO {}").format(
            pgsql.Identifier(table), pgsql.Identifier(role)
        )
    )


def _current_schema(cur: psycopg.Cursor[Any]) -> str:
    row = cur.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise psycopg.ProgrammingError("no current schema: set search_path for the writer")
    return str(row[0])
