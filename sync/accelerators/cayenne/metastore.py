"""The SQLite metastore: which files make up each table, the tables' columns, the commit
counter and the datasets' checkpoints.

A change becomes visible in one SQLite transaction that registers its files, its table's
columns and its checkpoint together: a crash at any instant leaves the old set or the new one.
The database is in WAL mode, so readers (in this process or another) see the last committed
set while the writer commits the next.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.accelerators import sql
from sync.changes import Checkpoint
from sync.schema import Column, TableSpec, parse_type

FILENAME = "cayenne.db"
BUSY_TIMEOUT_MS = 10_000  # a commit waits this long for another writer's, then fails

_DDL = (
    "CREATE TABLE IF NOT EXISTS cayenne_tables ("
    "name TEXT PRIMARY KEY, columns TEXT NOT NULL, key TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cayenne_files ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT NOT NULL, name TEXT NOT NULL UNIQUE, "
    "rows INTEGER NOT NULL, columns TEXT NOT NULL, tombstones INTEGER NOT NULL, "
    "min_seq INTEGER NOT NULL, max_seq INTEGER NOT NULL, min_key, max_key, bytes INTEGER NOT NULL, "
    "base INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS cayenne_files_table ON cayenne_files (table_name)",
    # Files no longer in any table: deleted once no query can still be reading them.
    "CREATE TABLE IF NOT EXISTS cayenne_retired (name TEXT PRIMARY KEY, retired_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cayenne_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    sql.CHECKPOINT_DDL,
)


@dataclass(frozen=True)
class DataFile:
    """One immutable Vortex file of a table, as registered.

    ``columns`` is the table's columns when it was written (later batches may have added or
    widened some); ``min_key``/``max_key`` bound the first key column's values in it. A
    ``base`` file holds each of its keys once and no tombstones, and no other base file of the
    table holds those keys: a load's pages (a scan yields each item once) and compactions.
    """

    id: int
    table: str
    name: str
    rows: int
    columns: tuple[Column, ...]
    tombstones: int
    min_seq: int
    max_seq: int
    min_key: Any
    max_key: Any
    bytes: int
    base: bool


@dataclass(frozen=True)
class NewFile:
    """A written file, before it is registered."""

    name: str
    rows: int
    columns: tuple[Column, ...]
    tombstones: int
    min_seq: int
    max_seq: int
    min_key: Any
    max_key: Any
    bytes: int
    base: bool = False


@dataclass(frozen=True)
class Snapshot:
    """One committed state: every table's columns and files."""

    tables: dict[str, TableSpec]
    files: dict[str, tuple[DataFile, ...]]


def connect(directory: Path) -> sqlite3.Connection:
    """A connection to the metastore in ``directory``, its tables created if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(
        directory / FILENAME,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # transactions are explicit
        check_same_thread=False,  # each user holds its own lock around it
    )
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
    return con


def create(con: sqlite3.Connection) -> None:
    with transaction(con):
        for ddl in _DDL:
            con.execute(ddl)


class transaction:  # noqa: N801 - used as a statement, like ``with open(...)``
    """``BEGIN IMMEDIATE`` (the write lock, taken at once) … ``COMMIT``; ROLLBACK on error."""

    def __init__(self, con: sqlite3.Connection, write: bool = True) -> None:
        self._con = con
        self._write = write

    def __enter__(self) -> sqlite3.Connection:
        self._con.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
        return self._con

    def __exit__(self, t: type[BaseException] | None, *_: object) -> None:
        self._con.execute("COMMIT" if t is None else "ROLLBACK")


def _columns_json(columns: Iterable[Column]) -> str:
    return json.dumps([[c.name, str(c.type)] for c in columns])


def _columns(text: str) -> tuple[Column, ...]:
    return tuple(Column(name, parse_type(type_)) for name, type_ in json.loads(text))


def read_snapshot(con: sqlite3.Connection, table: str | None = None) -> Snapshot:
    """The committed tables and files (of ``table`` only, if given), read in one transaction."""
    where, args = ("WHERE name = ?", [table]) if table is not None else ("", [])
    fwhere = "WHERE table_name = ?" if table is not None else ""
    with transaction(con, write=False):
        tables = {
            name: TableSpec(name, _columns(columns), tuple(json.loads(key)))
            for name, columns, key in con.execute(
                f"SELECT name, columns, key FROM cayenne_tables {where}", args
            )
        }
        files: dict[str, list[DataFile]] = {name: [] for name in tables}
        for row in con.execute(
            "SELECT id, table_name, name, rows, columns, tombstones, min_seq, max_seq, "
            f"min_key, max_key, bytes, base FROM cayenne_files {fwhere} ORDER BY id",
            args,
        ):
            fid, owner, file_name, rows, columns, tombstones, min_seq, max_seq = row[:8]
            min_key, max_key, size, base = row[8:]
            entry = DataFile(
                fid,
                owner,
                file_name,
                rows,
                _columns(columns),
                tombstones,
                min_seq,
                max_seq,
                min_key,
                max_key,
                size,
                bool(base),
            )
            files.setdefault(entry.table, []).append(entry)
    return Snapshot(tables, {name: tuple(entries) for name, entries in files.items()})


class SnapshotReader:
    """The last committed :class:`Snapshot`, read again only after a commit.

    One connection of its own, kept open: SQLite's ``data_version`` tells it whether any
    other connection (this process's writer, or another process) committed since the last
    read, so a query after no commit costs one pragma instead of reading every file's row.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._version: int | None = None
        self._snapshot: Snapshot | None = None
        self._closed = False

    def read(self) -> Snapshot:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the accelerator is closed")
            if self._con is None:
                self._con = connect(self._directory)
            version = int(self._con.execute("PRAGMA data_version").fetchone()[0])
            if self._snapshot is None or version != self._version:
                # A commit after the pragma only makes this read newer than ``version``: the
                # next read sees the version move and reads again.
                self._snapshot = read_snapshot(self._con)
                self._version = version
            return self._snapshot

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._con is not None:
                self._con.close()
                self._con = None
            self._snapshot = None


def next_commit(con: sqlite3.Connection) -> int:
    """Take the next commit number (inside the caller's write transaction)."""
    row = con.execute(
        "INSERT INTO cayenne_counters VALUES ('commit', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
    ).fetchone()
    return int(row[0])


def peek_commit(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT value FROM cayenne_counters WHERE name = 'commit'").fetchone()
    return int(row[0]) if row else 0


def put_table(con: sqlite3.Connection, spec: TableSpec) -> None:
    con.execute(
        "INSERT INTO cayenne_tables VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
        "SET columns = excluded.columns, key = excluded.key",
        [spec.name, _columns_json(spec.columns), json.dumps(list(spec.key))],
    )


def drop_table(con: sqlite3.Connection, name: str) -> None:
    """Remove table ``name`` and retire its files."""
    retire_files(
        con,
        [r[0] for r in con.execute("SELECT id FROM cayenne_files WHERE table_name = ?", [name])],
    )
    con.execute("DELETE FROM cayenne_tables WHERE name = ?", [name])


def add_file(con: sqlite3.Connection, table: str, file: NewFile) -> None:
    con.execute(
        "INSERT INTO cayenne_files (table_name, name, rows, columns, tombstones, min_seq, "
        "max_seq, min_key, max_key, bytes, base) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            table,
            file.name,
            file.rows,
            _columns_json(file.columns),
            file.tombstones,
            file.min_seq,
            file.max_seq,
            file.min_key,
            file.max_key,
            file.bytes,
            int(file.base),
        ],
    )


def retire_files(con: sqlite3.Connection, ids: Sequence[int]) -> None:
    now = time.time()
    for file_id in ids:
        row = con.execute(
            "DELETE FROM cayenne_files WHERE id = ? RETURNING name", [file_id]
        ).fetchone()
        if row is not None:
            con.execute("INSERT OR REPLACE INTO cayenne_retired VALUES (?, ?)", [row[0], now])


def live_ids(con: sqlite3.Connection, ids: Sequence[int]) -> int:
    """How many of ``ids`` are still registered."""
    marks = ", ".join("?" * len(ids))
    row = con.execute(f"SELECT count(*) FROM cayenne_files WHERE id IN ({marks})", list(ids))
    return int(row.fetchone()[0])


def rename_table(con: sqlite3.Connection, old: str, new: str) -> None:
    con.execute("UPDATE cayenne_tables SET name = ? WHERE name = ?", [new, old])
    con.execute("UPDATE cayenne_files SET table_name = ? WHERE table_name = ?", [new, old])


def store_checkpoint(con: sqlite3.Connection, dataset: str, checkpoint: Checkpoint) -> None:
    con.execute(sql.CHECKPOINT_DELETE, [dataset])
    rows = sql.checkpoint_rows(dataset, checkpoint)
    if rows:
        con.executemany(sql.CHECKPOINT_INSERT, rows)


def load_checkpoint(con: sqlite3.Connection, dataset: str) -> Checkpoint | None:
    return sql.checkpoint_from_rows(con.execute(sql.CHECKPOINT_SELECT, [dataset]).fetchall())


def live_names(con: sqlite3.Connection) -> set[str]:
    """The names of the files some table is made of now."""
    return {r[0] for r in con.execute("SELECT name FROM cayenne_files")}


def registered_names(con: sqlite3.Connection) -> set[str]:
    """Every file name the metastore knows: live or retired (not yet deleted)."""
    return live_names(con) | {r[0] for r in con.execute("SELECT name FROM cayenne_retired")}


def expired(con: sqlite3.Connection, older_than: float) -> list[str]:
    """Retired files retired before ``older_than`` (a UNIX time)."""
    return [
        r[0]
        for r in con.execute("SELECT name FROM cayenne_retired WHERE retired_at < ?", [older_than])
    ]


def forget(con: sqlite3.Connection, names: Iterable[str]) -> None:
    con.executemany("DELETE FROM cayenne_retired WHERE name = ?", [[n] for n in names])


def set_commit(con: sqlite3.Connection, value: int) -> None:
    con.execute(
        "INSERT INTO cayenne_counters VALUES ('commit', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [value],
    )


def table_of(con: sqlite3.Connection, ids: Sequence[int]) -> str | None:
    """The table all of ``ids`` belong to now; None if any is gone or they differ."""
    marks = ", ".join("?" * len(ids))
    rows = con.execute(
        f"SELECT table_name, count(*) FROM cayenne_files WHERE id IN ({marks}) GROUP BY table_name",
        list(ids),
    ).fetchall()
    if len(rows) != 1 or rows[0][1] != len(ids):
        return None
    return str(rows[0][0])


def file_counts(con: sqlite3.Connection) -> dict[str, int]:
    return {
        str(name): int(count)
        for name, count in con.execute(
            "SELECT table_name, count(*) FROM cayenne_files GROUP BY table_name"
        )
    }
