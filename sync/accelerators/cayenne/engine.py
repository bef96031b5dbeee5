"""The Cayenne accelerator: each change batch becomes new immutable Vortex files, registered
with its checkpoint in one metastore transaction; compaction merges files in the background.

Deletions are key tombstones, not position deletes: a DynamoDB change names a key, never the
file and row that hold it, so a tombstone costs nothing to write, and a query (or compaction)
resolves it with the same newest-version-per-key rule that resolves updates.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import sqlite3
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sync.accelerators import sql
from sync.accelerators.cayenne import files, metastore
from sync.accelerators.cayenne.metastore import DataFile, NewFile
from sync.accelerators.cayenne.query import (
    DUCKDB_CONFIG,
    SEQ_COLUMN,
    CayenneQueryHandle,
    latest_sql,
    table_sql,
)
from sync.accelerators.cayenne.resolved import ResolvedTables
from sync.accelerators.cayenne.spec import SPEC, options
from sync.accelerators.query import QueryError
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op
from sync.schema import Index, TableSpec, diff
from sync.settings import AccelerationSettings

log = logging.getLogger(__name__)
LOCK_FILE = "writer.lock"
DATA_DIR = "data"
RETIRED_GRACE_MS = 60_000
# Only the delta files are merged while they hold fewer rows than the base files / this.
MINOR_RATIO = 10  # a retired file outlives the longest query that could read it


class CayenneError(Exception):
    """A batch or operation Cayenne refuses (a null key; a write from a read-only opener)."""


class CayenneAccelerator:
    """Tables as Vortex files in ``cayenne_file_path``, listed by a SQLite metastore.

    The first process to open the directory takes its writer lock and syncs; any other
    opens it read-only (queries only), which the immutable files make safe.
    """

    engine = SPEC.name
    type_support = SPEC.type_support

    def __init__(self, settings: AccelerationSettings) -> None:
        if settings.file is None:
            raise CayenneError("Cayenne needs a directory: set params.cayenne_file_path")
        opts = dict(settings.options) if settings.options else options({})
        self._root = settings.file
        self._data_dir = self._root / DATA_DIR
        self._metadata_dir = Path(opts["cayenne_metadata_dir"] or self._root)
        if self._root.is_file():  # a snapshot restored in the directory's place
            _unpack(self._root, self._data_dir, self._metadata_dir)

        self._target_bytes = int(opts["cayenne_target_file_size_mb"]) * 1024 * 1024
        self._trigger_files = int(opts["cayenne_compaction_trigger_files"])
        self._interval_s = int(opts["cayenne_compaction_background_interval_ms"]) / 1000
        self._grace_s = int(opts.get("retired_grace_ms", RETIRED_GRACE_MS)) / 1000
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._metadata_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._metadata_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.writer = True
        except BlockingIOError:
            self.writer = False
        self._write_lock = threading.Lock()
        self._closed = False
        self._con = metastore.connect(self._metadata_dir)
        self._snapshots = metastore.SnapshotReader(self._metadata_dir)
        self._files = files.FileCache(self._data_dir)
        self._resolved = ResolvedTables(int(opts["cayenne_segment_cache_mb"]) * 1024 * 1024)
        self._duck = duckdb.connect(":memory:", config=DUCKDB_CONFIG)  # queries' cursors
        self._duck_lock = threading.Lock()
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None
        self.compactions = 0  # merges committed, for status and tests
        if self.writer:
            metastore.create(self._con)
            registered = metastore.registered_names(self._con)
            removed = files.remove_unregistered(self._data_dir, registered)
            if removed:
                log.info("cayenne: removed %d uncommitted files from %s", len(removed), self._root)
            self._delete_expired()
            self._next_seq = metastore.peek_commit(self._con) + 1
            if self._interval_s > 0:
                self._compactor = threading.Thread(
                    target=self._compact_loop, name="cayenne-compaction", daemon=True
                )
                self._compactor.start()

    # -- reading ---------------------------------------------------------------------------

    def table_spec(self, name: str) -> TableSpec | None:
        with self._write_lock:
            return metastore.read_snapshot(self._con, name).tables.get(name)

    def files_of(self, name: str) -> tuple[DataFile, ...]:
        """The files table ``name`` is made of now."""
        with self._write_lock:
            return metastore.read_snapshot(self._con, name).files.get(name, ())

    def load_checkpoint(self, dataset: str) -> Checkpoint | None:
        with self._write_lock:
            return metastore.load_checkpoint(self._con, dataset)

    def row_count(self, table: str) -> int:
        reader = self.query_handle().execute(f"SELECT count(*) AS c FROM {sql.quote(table)}")
        return int(reader.read_all()["c"][0].as_py())

    def declare_indexes(self, table: str, indexes: tuple[Index, ...]) -> None:
        """Cayenne keeps one index, on the key, per file (point lookups by key read only the
        files and rows holding it); secondary indexes are not built: said once."""
        if indexes:
            log.warning(
                "cayenne: %s: acceleration.indexes %s not built: Cayenne indexes the key of "
                "each file only; a lookup by another column reads the table resolved in memory "
                "(cayenne_segment_cache_mb) or its files",
                table,
                ", ".join("(" + ", ".join(i.columns) + ")" for i in indexes),
            )

    def query_handle(self) -> CayenneQueryHandle:
        return CayenneQueryHandle(
            self._metadata_dir,
            self._data_dir,
            self._cursor,
            self._snapshots,
            self._files,
            self._resolved,
        )

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._duck_lock:
            if self._closed:
                raise QueryError("the accelerator is closed")
            return self._duck.cursor()

    # -- writing ---------------------------------------------------------------------------

    def _check_writer(self) -> None:
        if self._closed:
            raise CayenneError("the accelerator is closed")
        if not self.writer:
            raise CayenneError(
                f"another process holds {self._metadata_dir / LOCK_FILE} and writes these "
                "Cayenne tables; this one only reads them"
            )

    def create_table(self, spec: TableSpec) -> None:
        with self._write_lock:
            self._check_writer()
            with metastore.transaction(self._con):
                metastore.drop_table(self._con, spec.name)
                metastore.put_table(self._con, spec)

    def swap_in(self, dataset: str, staging: TableSpec, name: str, checkpoint: Checkpoint) -> None:
        with self._write_lock:
            self._check_writer()
            with metastore.transaction(self._con):
                metastore.drop_table(self._con, name)
                metastore.rename_table(self._con, staging.name, name)
                metastore.put_table(self._con, replace(staging, name=name))
                metastore.store_checkpoint(self._con, dataset, checkpoint)
            self._delete_expired()

    def apply(self, dataset: str, spec: TableSpec, batch: ChangeBatch) -> None:
        rows = batch.rows if batch.inserts_only else batch.latest_per_key(spec.key)
        for key in spec.key:
            if key not in rows.column_names or rows.column(key).null_count:
                raise CayenneError(f"a row of the batch for {spec.name} has no {key!r} (a key)")
        with self._write_lock:
            self._check_writer()
            current = metastore.read_snapshot(self._con, spec.name).tables.get(spec.name)
            stored = diff(current, spec).applied(current)  # refuses a narrowing, keeps extras
            seq = self._next_seq
            base = batch.inserts_only  # a load's page: its keys are in no other page
            written = [self._write(spec, chunk, seq, base) for chunk in self._chunks(rows)]
            try:
                with metastore.transaction(self._con):
                    metastore.put_table(self._con, stored)
                    for file in written:
                        metastore.add_file(self._con, spec.name, file)
                    if batch.checkpoint is not None:
                        metastore.store_checkpoint(self._con, dataset, batch.checkpoint)
                    metastore.set_commit(self._con, seq)
            except BaseException:
                files.delete(self._data_dir, [f.name for f in written])
                raise
            self._next_seq = seq + 1

    def _chunks(self, rows: pa.Table) -> list[pa.Table]:
        """``rows`` cut into pieces of about the target file size (none if empty)."""
        if rows.num_rows == 0:
            return []
        pieces = max(1, math.ceil(rows.nbytes / self._target_bytes))
        size = math.ceil(rows.num_rows / pieces)
        return [rows.slice(start, size) for start in range(0, rows.num_rows, size)]

    def _write(self, spec: TableSpec, rows: pa.Table, seq: int, base: bool) -> NewFile:
        """One file of ``rows`` in ``spec``'s columns, each row stamped with commit ``seq``."""
        arrays: list[pa.Array | pa.ChunkedArray] = [
            pa.array([seq] * rows.num_rows, pa.int64()),
            rows.column(OP_COLUMN).cast(pa.int8()),
        ]
        fields = [pa.field(SEQ_COLUMN, pa.int64()), pa.field(OP_COLUMN, pa.int8())]
        for column in spec.columns:
            kind = column.type.arrow
            if column.name in rows.column_names:
                arrays.append(rows.column(column.name).cast(kind))
            else:
                arrays.append(pa.nulls(rows.num_rows, kind))
            fields.append(pa.field(column.name, kind))
        # Sorted by key: Vortex's per-chunk min/max then skip most of a file in a lookup.
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        table = table.sort_by([(k, "ascending") for k in spec.key])
        name, size = files.write(self._data_dir, table)
        self._files.prime(name, table.column(spec.key[0]))
        low, high = _key_range(table.column(spec.key[0]))
        tombstones = pc.sum(pc.equal(table.column(OP_COLUMN), int(Op.DELETE))).as_py() or 0
        return NewFile(
            name, rows.num_rows, spec.columns, tombstones, seq, seq, low, high, size, base
        )

    # -- compaction ------------------------------------------------------------------------

    def compact(self, name: str) -> bool:
        """Merge files of table ``name``; True if a merge was committed. Queries never wait.

        While the newer (delta) files hold few rows next to the base files, only they are
        merged, into one delta file (the newest version of each key, tombstones kept: they
        still hide rows of the base files), so a busy stream does not rewrite the whole table
        every few batches. Otherwise every file is merged into one base file: the newest
        version of each key, no tombstones. Nothing commits if the table's files changed
        meanwhile (a load swapped in).
        """
        self._check_writer()
        with self._write_lock:
            snapshot = metastore.read_snapshot(self._con, name)
        spec = snapshot.tables.get(name)
        files_now = snapshot.files.get(name, ())
        if spec is None or len(files_now) < 2:
            return False
        base = [f for f in files_now if f.base]
        delta = [f for f in files_now if not f.base]
        minor = (
            len(delta) >= 2
            and bool(base)
            and max(f.max_seq for f in base) < min(f.min_seq for f in delta)
            and sum(f.rows for f in delta) * MINOR_RATIO < sum(f.rows for f in base)
        )
        chosen = tuple(delta) if minor else files_now
        order = ", ".join(sql.quote(k) for k in spec.key)
        db = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
        try:
            entries = []
            for file in chosen:
                db.register(f"_f{file.id}", files.dataset(self._data_dir, file.name))
                entries.append((f"_f{file.id}", file))
            if minor:
                merged = db.sql(
                    f"SELECT * EXCLUDE (_rn) FROM ({latest_sql(spec, entries)}) ORDER BY {order}"
                ).to_arrow_table()
            else:
                merged = db.sql(
                    f"SELECT {SEQ_COLUMN}, CAST({int(Op.UPSERT)} AS TINYINT) AS {OP_COLUMN}, * "
                    f"EXCLUDE ({SEQ_COLUMN}) FROM ({table_sql(spec, entries, keep_seq=True)}) "
                    f"ORDER BY {order}"
                ).to_arrow_table()
        finally:
            db.close()
        merged = merged.cast(
            pa.schema(
                [pa.field(SEQ_COLUMN, pa.int64()), pa.field(OP_COLUMN, pa.int8())]
                + [pa.field(c.name, c.type.arrow) for c in spec.columns]
            )
        )
        merged_name, size = files.write(self._data_dir, merged)
        self._files.prime(merged_name, merged.column(spec.key[0]))
        low, high = _key_range(merged.column(spec.key[0]))
        seqs = [f.min_seq for f in chosen] + [f.max_seq for f in chosen]
        tombstones = pc.sum(pc.equal(merged.column(OP_COLUMN), int(Op.DELETE))).as_py() or 0
        new = NewFile(
            merged_name,
            merged.num_rows,
            spec.columns,
            tombstones,
            min(seqs),
            max(seqs),
            low,
            high,
            size,
            not minor,  # a full merge holds each key once, no tombstones: a base file
        )
        ids = [f.id for f in chosen]
        committed = False
        try:
            with self._write_lock, metastore.transaction(self._con):
                table = metastore.table_of(self._con, ids)
                if table is not None:
                    metastore.retire_files(self._con, ids)
                    metastore.add_file(self._con, table, new)
                    committed = True
        finally:
            if not committed:
                files.delete(self._data_dir, [merged_name])
        if committed:
            self.compactions += 1
            with self._write_lock:
                self._delete_expired()
        return committed

    def _compact_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                with self._write_lock:
                    counts = metastore.file_counts(self._con)
                for name, count in counts.items():
                    if self._stop.is_set():
                        return
                    if count >= self._trigger_files:
                        self.compact(name)
                with self._write_lock:
                    self._delete_expired()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("cayenne: compaction failed; retried in %.1fs", self._interval_s)

    def _delete_expired(self) -> None:
        """Delete retired files no query can still be reading (called holding the lock, or
        before any other thread runs)."""
        # Cached indexes of files no table lists any more go too, queried or not.
        self._files.keep_only(metastore.live_names(self._con))
        names = metastore.expired(self._con, time.time() - self._grace_s)
        if names:
            files.delete(self._data_dir, names)
            with metastore.transaction(self._con):
                metastore.forget(self._con, names)

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self, dest: Path) -> None:
        """Write a tar of the metastore (SQLite's online backup) and the files it lists to
        ``dest``, holding the writer: no batch lands halfway, so tables and checkpoints in the
        copy agree. Opening a directory path that holds such a tar unpacks it."""
        self._check_writer()
        with self._write_lock:
            backup = dest.with_name(f"{dest.name}.{metastore.FILENAME}")
            target = sqlite3.connect(backup)
            try:
                self._con.backup(target)
                with metastore.transaction(target, write=False):
                    live = [r[0] for r in target.execute("SELECT name FROM cayenne_files")]
            finally:
                target.close()
            try:
                with tarfile.open(dest, "w") as tar:
                    tar.add(backup, arcname=metastore.FILENAME)
                    for name in live:
                        tar.add(self._data_dir / name, arcname=f"{DATA_DIR}/{name}")
            finally:
                backup.unlink(missing_ok=True)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join(30)
        with self._duck_lock:
            self._closed = True
        with self._write_lock:
            self._con.close()
            self._snapshots.close()
            self._duck.close()
            os.close(self._lock_fd)  # releases the writer lock

    def __enter__(self) -> CayenneAccelerator:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _unpack(archive: Path, data_dir: Path, metadata_dir: Path) -> None:
    """Unpack a snapshot (see :meth:`CayenneAccelerator.snapshot`) lying at the directory's
    path. It is unpacked beside, then renamed into place: a crash meanwhile leaves no
    directory, and the runtime restores the snapshot again."""
    root = archive
    packed = root.with_name(f".{root.name}.snapshot")
    unpacking = root.with_name(f".{root.name}.unpacking")
    os.replace(archive, packed)
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(packed) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and (m.name == metastore.FILENAME or m.name.startswith(f"{DATA_DIR}/"))
        ]
        tar.extractall(unpacking, members=members, filter="data")
    if metadata_dir.resolve() != root.resolve():
        metadata_dir.mkdir(parents=True, exist_ok=True)
        os.replace(unpacking / metastore.FILENAME, metadata_dir / metastore.FILENAME)
    (unpacking / DATA_DIR).mkdir(exist_ok=True)
    os.replace(unpacking, root)
    packed.unlink()
    log.info("cayenne: unpacked a snapshot into %s", data_dir.parent)


def _key_range(column: pa.ChunkedArray) -> tuple[object, object]:
    """The least and greatest value of a key column, if SQLite compares them as DuckDB does
    (text, integers, bytes); else (None, None): the file is never pruned."""
    if column.length() == 0:
        return None, None
    if not (
        pa.types.is_string(column.type)
        or pa.types.is_integer(column.type)
        or pa.types.is_binary(column.type)
    ):
        return None, None
    bounds = pc.min_max(column)
    return bounds["min"].as_py(), bounds["max"].as_py()
