"""Read-only queries over one committed file set.

Each query reads the metastore once (one SQLite read transaction: one committed set), then
runs on a new connection of an in-memory DuckDB where each table is a view over its Vortex
files: the newest version of each key wins (by commit number) and tombstones hide their keys.
The files never change, so the query sees that set to its end, whatever the writer commits
meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from sync.accelerators import sql
from sync.accelerators.cayenne import files, metastore
from sync.accelerators.cayenne.metastore import DataFile, Snapshot
from sync.accelerators.cayenne.prune import may_hold, pinned_keys
from sync.accelerators.duckdb import DuckDBQuery, _with_utc, type_name
from sync.accelerators.query import QueryError, StopSignal
from sync.changes import OP_COLUMN, Op
from sync.schema import ColumnType, ListType, SqlType, StructType, TableSpec

SEQ_COLUMN = "_seq"  # the commit that wrote the row; the highest wins per key
ROWS_PER_BATCH = 64 * 1024
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}
DIALECT = "duckdb"

if TYPE_CHECKING:
    from sync.accelerators.cayenne.resolved import ResolvedTables


def view_type(type_: SqlType) -> str:
    """The DuckDB type a column is read as (JSON as its text, as the other engines return it)."""
    return "VARCHAR" if type_ is ColumnType.JSON else type_name(type_)


def cast(name: str, before: SqlType | None, after: SqlType) -> str:
    """``name`` as written in a file (``before``; None: the file predates the column) read
    as the table's type now: a widened column converts as DuckDB's ALTER … TYPE would."""
    column = sql.quote(name)
    if before is None:
        return f"CAST(NULL AS {view_type(after)})"
    if before == after:
        return column
    if after in (ColumnType.VARCHAR, ColumnType.JSON):
        if isinstance(before, ListType | StructType):
            return f"CAST(to_json({column}) AS VARCHAR)"
        if before is ColumnType.BLOB:
            return f"base64({column})"
    return f"CAST({column} AS {view_type(after)})"


def file_view(relation: str, file: DataFile, spec: TableSpec) -> str:
    """SELECT of one file's rows in the table's current columns, with commit and op."""
    types = {c.name: c.type for c in file.columns}
    columns = ", ".join(
        f"{cast(c.name, types.get(c.name), c.type)} AS {sql.quote(c.name)}" for c in spec.columns
    )
    return f"SELECT {SEQ_COLUMN}, {OP_COLUMN}, {columns} FROM {relation}"


def latest_sql(spec: TableSpec, entries: Sequence[tuple[str, DataFile]]) -> str:
    """The newest row of each key over ``entries``, tombstones kept (with ``_rn``, always 1)."""
    key = ", ".join(sql.quote(k) for k in spec.key)
    union = " UNION ALL ".join(file_view(rel, f, spec) for rel, f in entries)
    return (
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
        f"ORDER BY {SEQ_COLUMN} DESC) AS _rn FROM ({union})) WHERE _rn = 1"
    )


def table_sql(spec: TableSpec, entries: Sequence[tuple[str, DataFile]], keep_seq: bool) -> str:
    """The table's rows over ``entries`` (relation name, file): newest version of each key,
    tombstoned keys left out. ``keep_seq`` keeps the commit column (for compaction)."""
    names = ", ".join(sql.quote(c) for c in spec.column_names)
    out = f"{SEQ_COLUMN}, {names}" if keep_seq else names
    if not entries:
        empty = ", ".join(
            f"CAST(NULL AS {view_type(c.type)}) AS {sql.quote(c.name)}" for c in spec.columns
        )
        seq = f"CAST(NULL AS BIGINT) AS {SEQ_COLUMN}, " if keep_seq else ""
        return f"SELECT {seq}{empty} WHERE false"
    base = [(rel, f) for rel, f in entries if f.base]
    delta = [(rel, f) for rel, f in entries if not f.base]
    key = ", ".join(sql.quote(k) for k in spec.key)
    if base and (not delta or max(f.max_seq for _, f in base) < min(f.min_seq for _, f in delta)):
        # Base files hold each key once between them: a row of theirs is current unless a
        # later (delta) file names its key. An anti-join against the few delta keys costs far
        # less than ranking every row.
        rows = " UNION ALL ".join(file_view(rel, f, spec) for rel, f in base)
        if not delta:
            return f"SELECT {out} FROM ({rows})"
        changes = " UNION ALL ".join(file_view(rel, f, spec) for rel, f in delta)
        match = sql.key_match(spec.key, "_b", "_d")
        return (
            f"SELECT {out} FROM ({rows}) AS _b WHERE NOT EXISTS "
            f"(SELECT 1 FROM ({changes}) AS _d WHERE {match}) UNION ALL "
            f"SELECT {out} FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
            f"ORDER BY {SEQ_COLUMN} DESC) AS _rn FROM ({changes})) "
            f"WHERE _rn = 1 AND {OP_COLUMN} = {int(Op.UPSERT)}"
        )
    union = " UNION ALL ".join(file_view(rel, f, spec) for rel, f in entries)
    return (
        f"SELECT {out} FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
        f"ORDER BY {SEQ_COLUMN} DESC) AS _rn FROM ({union})) "
        f"WHERE _rn = 1 AND {OP_COLUMN} = {int(Op.UPSERT)}"
    )


def attach_views(
    db: duckdb.DuckDBPyConnection,
    cache: files.FileCache,
    snapshot: Snapshot,
    pinned: Mapping[str, Sequence[object]] | None = None,
    resolved: ResolvedTables | None = None,
) -> int:
    """Register the files of ``snapshot`` and create one view per table; files read.

    A table ``resolved`` holds is registered as its rows in memory, no file read.

    A table in ``pinned`` (a point lookup: first key column → values) gets only the files
    whose key range holds one of the values, and of those, when the key is text, bytes or an
    integer, only the rows of those keys, found in the file's key index: a file that holds
    none of them is not read at all.
    """
    opened = 0
    for name, spec in snapshot.tables.items():
        entries: list[tuple[str, DataFile, pads.Dataset | pa.Table]] = []
        values = (pinned or {}).get(name)
        if values is None and resolved is not None:
            rows = resolved.rows(
                name, spec, snapshot.files.get(name, ()), lambda f: cache.dataset(f.name)
            )
            if rows is not None:
                db.register(name, rows)
                continue
        for file in snapshot.files.get(name, ()):
            if values is not None and not may_hold(file, values):
                continue
            relation = _relation(cache, file, spec.key[0], values)
            if relation is None:
                continue
            entries.append((f"_f{file.id}", file, relation))
            opened += 1
        found = _found_rows(spec, entries) if values is not None else None
        if found is not None:
            db.register(name, found)
            continue
        for relation_name, _, relation in entries:
            db.register(relation_name, relation)
        view = table_sql(spec, [(n, f) for n, f, _ in entries], keep_seq=False)
        db.execute(f"CREATE TEMP VIEW {sql.quote(name)} AS {view}")
    return opened


def _found_rows(
    spec: TableSpec, entries: Sequence[tuple[str, DataFile, pads.Dataset | pa.Table]]
) -> pa.Table | None:
    """A point lookup's rows of the table, resolved here when every file gave just the key's
    rows, in the table's columns as they are now: the newest version of each key, tombstoned
    keys left out. None if some file needs the view's SQL (a whole file, older columns)."""
    tables = []
    for _, file, relation in entries:
        if not isinstance(relation, pa.Table) or file.columns != spec.columns:
            return None
        tables.append(relation)
    if not tables or len({t.schema for t in tables}) > 1:
        return None
    rows = pa.concat_tables(tables)
    keys = list(zip(*(rows.column(k).to_pylist() for k in spec.key), strict=True))
    seqs = rows.column(SEQ_COLUMN).to_pylist()
    newest: dict[tuple[object, ...], int] = {}
    for i, key in enumerate(keys):
        if key not in newest or seqs[i] > seqs[newest[key]]:
            newest[key] = i
    ops = rows.column(OP_COLUMN).to_pylist()
    keep = sorted(i for i in newest.values() if ops[i] == int(Op.UPSERT))
    # Slices, not take: Arrow has no take for the string views Vortex returns.
    kept = pa.concat_tables([rows.slice(i, 1) for i in keep]) if keep else rows.slice(0, 0)
    return kept.select(list(spec.column_names))


_INDEXED: dict[SqlType, type] = {
    ColumnType.VARCHAR: str,
    ColumnType.BIGINT: int,
    ColumnType.BLOB: bytes,
}


def _relation(
    cache: files.FileCache, file: DataFile, key: str, values: Sequence[object] | None
) -> pads.Dataset | pa.Table | None:
    """What a view reads of ``file``: for a point lookup on text, bytes or integer keys,
    only the rows of those keys (None if it holds none); else the whole file as a dataset."""
    kind = next((c.type for c in file.columns if c.name == key), None)
    python_type = _INDEXED.get(kind) if kind is not None else None
    if values and python_type is not None and all(type(v) is python_type for v in values):
        return cache.rows(file.name, key, values)
    return cache.dataset(file.name)


class CayenneQuery(DuckDBQuery):
    """A statement on its own in-memory DuckDB; ``files_opened`` counts the files it reads."""

    files_opened = 0


class CayenneQueryHandle:
    """Queries each in their own in-memory DuckDB over the committed files."""

    dialect = DIALECT

    def __init__(
        self,
        metadata_dir: Path,
        data_dir: Path,
        connect: Callable[[], duckdb.DuckDBPyConnection] | None = None,
        snapshots: metastore.SnapshotReader | None = None,
        cache: files.FileCache | None = None,
        resolved: ResolvedTables | None = None,
    ) -> None:
        self._metadata_dir = metadata_dir
        self._data_dir = data_dir
        # A new connection per query (its views and registrations are its own): a cursor of
        # the accelerator's in-memory DuckDB, or else a database of its own.
        self._connect = connect or (lambda: duckdb.connect(":memory:", config=DUCKDB_CONFIG))
        # The accelerator shares one of each between its handles; a handle made on its own
        # reads the metastore and opens the files afresh per query.
        self._snapshots = snapshots
        self._cache = cache
        self._resolved = resolved

    def snapshot(self) -> Snapshot:
        """The last committed set."""
        if self._snapshots is not None:
            return self._snapshots.read()
        con = metastore.connect(self._metadata_dir)
        try:
            return metastore.read_snapshot(con)
        finally:
            con.close()

    def execute(
        self, sql_text: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        return self.start(sql_text, params, stop=stop).reader

    def start(
        self,
        sql_text: str,
        params: Sequence[object] = (),
        max_batch_rows: int | None = None,
        stop: StopSignal | None = None,
    ) -> CayenneQuery:
        try:
            snapshot = self.snapshot()
        except sqlite3.Error as e:
            raise QueryError(f"the Cayenne metastore cannot be read: {e}") from e
        query = CayenneQuery(self._connect())
        if stop is not None:
            stop.on_set(query.interrupt)
        rows = ROWS_PER_BATCH if max_batch_rows is None else min(max_batch_rows, ROWS_PER_BATCH)
        try:
            if stop is not None and stop.is_set():
                raise QueryError("the query was stopped before it started")
            first_keys = {name: spec.key[0] for name, spec in snapshot.tables.items()}
            pinned = pinned_keys(sql_text, params, first_keys)
            cache = self._cache or files.FileCache(self._data_dir)
            cache.follow(snapshot, lambda: self._follow(snapshot))
            query.files_opened = attach_views(query.cursor, cache, snapshot, pinned, self._resolved)
            query.cursor.execute("BEGIN TRANSACTION READ ONLY")
            relation = query.cursor.sql(sql_text, params=list(params) or None)
            if relation is None:
                query.reader = pa.RecordBatchReader.from_batches(pa.schema([]), [])
            else:
                query.reader = _with_utc(relation.to_arrow_reader(rows))
        except (duckdb.Error, QueryError, OSError, RuntimeError) as e:  # Vortex: RuntimeError
            query.close()
            raise QueryError(str(e)) from e
        return query

    def _follow(self, snapshot: Snapshot) -> set[str]:
        """The files of a newly committed set; cached tables it no longer has are dropped."""
        if self._resolved is not None:
            self._resolved.keep_only(set(snapshot.tables))
        return {f.name for fs in snapshot.files.values() for f in fs}
