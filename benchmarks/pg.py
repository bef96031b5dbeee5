"""The PostgreSQL server the benchmarks use: reachability, a database of their own, and the
CPU the server spends for us (it runs in other processes, so ``process_time`` misses it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import process_cpu_s

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=dynamirror_bench connect_timeout=3"
BENCH_DB = "dynamirror_bench"


def open_server(dsn: str) -> tuple[str | None, str]:
    """``(dsn, "")`` when the server answers (creating the benchmarks' own database when the DSN
    names it), else ``(None, why)``."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'psycopg[binary]')"
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    try:
        psycopg.connect(dsn).close()
        return dsn, ""
    except psycopg.OperationalError as e:
        missing = "does not exist" in str(e)
        if not (missing and params.get("dbname") == BENCH_DB):
            return None, f"PostgreSQL unreachable ({str(e).strip().splitlines()[0]})"
    try:
        admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {BENCH_DB}")
        return dsn, ""
    except psycopg.Error as e:
        return None, f"cannot create database {BENCH_DB}: {str(e).strip()}"


def connection_keywords(dsn: str) -> dict[str, str]:
    """libpq keywords, as ``AccelerationSettings.connection`` takes them."""
    import psycopg

    return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items() if v is not None}


def accelerator_import_error() -> str | None:
    """Why the product's postgres accelerator cannot be used, or None."""
    try:
        import sync.accelerators.postgres  # noqa: F401
    except ImportError as e:
        return f"sync.accelerators.postgres does not import ({e})"
    return None


def drop_tables(dsn: str | None, *names: str) -> None:
    """Drop the benchmark's tables from its database (the database itself stays)."""
    import psycopg

    with psycopg.connect(dsn or "", autocommit=True) as con:
        for name in names:
            con.execute(f'DROP TABLE IF EXISTS "{name}"')


class ServerCpu:
    """CPU seconds used by the server's processes that work for the benchmark database
    (its backends) and by its background writers, read from /proc."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._con: Any = psycopg.connect(dsn, autocommit=True)
        self._db = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname") or "postgres"
        self._base: dict[int, float] = {}

    def _snapshot(self) -> dict[int, float]:
        rows = self._con.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s OR backend_type <> "
            "'client backend'",
            [self._db],
        ).fetchall()
        seen = {}
        for (pid,) in rows:
            if Path(f"/proc/{pid}").exists():
                try:
                    seen[pid] = process_cpu_s(pid)
                except OSError:
                    continue
        return seen

    def __call__(self) -> float:
        """CPU seconds used since the first call (new backends count from zero)."""
        now = self._snapshot()
        if not self._base:
            self._base = now
            return 0.0
        return sum(cpu - self._base.get(pid, 0.0) for pid, cpu in now.items())

    def close(self) -> None:
        self._con.close()
