"""Each table's current rows kept in memory, kept up to date commit by commit.

Resolving the table from its files costs a query an anti-join of the base files against
every change key (or a window over every row): most of an aggregate's time on a table with
many change files. Files never change, so the resolved rows of one committed set stay right
until the set changes. A set that only gained files (change batches, a load's pages) is
reached from the one before by applying just those files: the old rows minus the keys they
name, plus their newest upserts. Any other change (a compaction, a load swapped in, new
columns) resolves the table afresh. The tables held are bounded by
``cayenne_segment_cache_mb``; a table that does not fit is read from its files, as without
this cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from sync.accelerators import sql
from sync.accelerators.cayenne.metastore import DataFile
from sync.accelerators.cayenne.query import DUCKDB_CONFIG, SEQ_COLUMN, file_view, table_sql
from sync.changes import OP_COLUMN, Op
from sync.schema import TableSpec

log = logging.getLogger(__name__)

Relation = Callable[[DataFile], pads.Dataset]


@dataclass(frozen=True)
class Resolved:
    """A table's rows as of the committed set made of ``files`` (by id)."""

    spec: TableSpec
    files: frozenset[int]
    rows: pa.Table


class ResolvedTables:
    """The resolved rows of each table, up to ``budget_bytes`` in all (0: none kept)."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._lock = threading.Lock()  # guards the dicts, never held while resolving
        self._resolving = threading.Lock()  # one resolution at a time: the others reuse it
        self._tables: dict[str, Resolved] = {}
        self._too_big: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self._budget > 0

    def rows(
        self, name: str, spec: TableSpec, files: Sequence[DataFile], relation: Relation
    ) -> pa.Table | None:
        """Table ``name``'s rows in the committed set of ``files``; None when it is not kept
        (over the budget, or the cache is off): the caller then reads the files."""
        if not self.enabled or name in self._too_big:
            return None
        ids = frozenset(f.id for f in files)
        with self._resolving:
            with self._lock:
                held = self._tables.get(name)
            if held is not None and held.spec == spec and held.files == ids:
                return held.rows
            added = [f for f in files if held is None or f.id not in held.files]
            if held is not None and held.spec == spec and held.files <= ids:
                rows = self._advance(held.rows, spec, added, relation)
            else:
                rows = self._resolve(spec, files, relation)
            with self._lock:
                others = sum(r.rows.nbytes for n, r in self._tables.items() if n != name)
                if others + rows.nbytes > self._budget:
                    self._tables.pop(name, None)
                    self._too_big.add(name)
                else:
                    self._tables[name] = Resolved(spec, ids, rows)
                    return rows
        log.info(
            "cayenne: %s (%.0f MB resolved) does not fit cayenne_segment_cache_mb; its "
            "queries read its files",
            name,
            rows.nbytes / 1e6,
        )
        return None

    def keep_only(self, names: set[str]) -> None:
        """Forget tables no longer in the committed set (dropped, renamed away)."""
        with self._lock:
            for name in [n for n in self._tables if n not in names]:
                del self._tables[name]
            self._too_big &= names

    def _resolve(self, spec: TableSpec, files: Sequence[DataFile], relation: Relation) -> pa.Table:
        db = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
        try:
            entries = []
            for file in files:
                db.register(f"_f{file.id}", relation(file))
                entries.append((f"_f{file.id}", file))
            return db.sql(table_sql(spec, entries, keep_seq=False)).to_arrow_table()
        finally:
            db.close()

    def _advance(
        self, before: pa.Table, spec: TableSpec, added: Sequence[DataFile], relation: Relation
    ) -> pa.Table:
        """``before`` with the files ``added`` applied: committed after it, so their rows are
        newer than any of its rows."""
        if not added:
            return before
        db = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
        try:
            db.register("_before", before)
            views = []
            for file in added:
                db.register(f"_f{file.id}", relation(file))
                views.append(file_view(f"_f{file.id}", file, spec))
            changes = " UNION ALL ".join(views)
            key = ", ".join(sql.quote(k) for k in spec.key)
            names = ", ".join(sql.quote(c) for c in spec.column_names)
            match = sql.key_match(spec.key, "_b", "_d")
            return db.sql(
                f"SELECT {names} FROM _before AS _b WHERE NOT EXISTS "
                f"(SELECT 1 FROM ({changes}) AS _d WHERE {match}) UNION ALL "
                f"SELECT {names} FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
                f"ORDER BY {SEQ_COLUMN} DESC) AS _rn FROM ({changes})) "
                f"WHERE _rn = 1 AND {OP_COLUMN} = {int(Op.UPSERT)}"
            ).to_arrow_table()
        finally:
            db.close()
