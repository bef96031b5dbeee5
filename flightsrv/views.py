"""The spicepod's top-level ``views:`` — SQL over the datasets, served as read-only tables.

A view is checked at start exactly as a client's query is (the statement allow-list), and must
read only datasets or views declared before it; a view that does not pass is a configuration
error naming it and the reason. When a query names a view, the view's SQL takes its place as a
subquery under the view's name, and the whole statement is checked again: a view can never read
more than its own SQL could, and runs in the engine session of the datasets it reads. GetTables
lists views as ``VIEW``, with their columns once the datasets they read are Ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

import pyarrow as pa
import sqlglot
from sqlglot import exp

from flightsrv.config import DEFAULT_SCHEMA, QueryLimits, View
from flightsrv.flightsql import sqlcheck
from flightsrv.flightsql.catalog import (
    Catalog,
    CrossEngineQuery,
    DatasetNotReady,
    TableInfo,
    TableNotFound,
)
from flightsrv.flightsql.sqlcheck import CheckedQuery
from sync.accelerators.query import QueryError, QueryHandle

MAX_DEPTH = 16  # views reading views, at most this deep
CATALOG_NAME = "dynamirror"  # as the Flight SQL server names its catalog and schema
SCHEMA_NAME = DEFAULT_SCHEMA


class ViewError(ValueError):
    """A view that cannot be served; the message names it and says why."""


def check_views(
    views: Sequence[View], datasets: Iterable[str], limits: QueryLimits = sqlcheck.DEFAULT_LIMITS
) -> None:
    """Refuse a view whose SQL is not an allowed read, takes parameters, or names a table that
    is neither a dataset nor a view declared before it (so views cannot loop)."""
    known = {d.lower() for d in datasets}
    for view in views:
        where = f"views: {view.name}"
        if view.name.lower() in known:
            raise ViewError(f"{where}: name: a dataset or another view is named so already")
        try:
            checked = sqlcheck.check(view.sql, CATALOG_NAME, SCHEMA_NAME, limits)
        except (sqlcheck.SqlSyntaxError, sqlcheck.ReadOnlyViolation) as e:
            raise ViewError(f"{where}: sql: {' '.join(str(e).split())}") from e
        except sqlcheck.StatementTooLarge as e:
            raise ViewError(f"{where}: sql: {e}") from e
        if checked.param_count:
            raise ViewError(f"{where}: sql: a view takes no parameters ($1, ?)")
        missing = [t for t in checked.tables if t.lower() not in known]
        if missing:
            raise ViewError(
                f"{where}: sql: reads {missing[0]!r}, which is no dataset nor a view declared "
                "before this one"
            )
        known.add(view.name.lower())


class ViewCatalog:
    """The datasets of ``base`` and the views over them (see the module docstring)."""

    def __init__(
        self, base: Catalog, views: Sequence[View], limits: QueryLimits = sqlcheck.DEFAULT_LIMITS
    ) -> None:
        self._base = base
        self._views = {v.name.lower(): v for v in views}
        self._limits = limits

    def expand(self, checked: CheckedQuery) -> CheckedQuery:
        """``checked`` with every view it names replaced by the view's SQL, checked again."""
        for _ in range(MAX_DEPTH):
            named = {t.lower() for t in checked.tables} & set(self._views)
            if not named:
                return checked
            tree = checked.tree.copy()
            ctes = {cte.alias.lower() for cte in tree.find_all(exp.CTE)}
            for table in list(tree.find_all(exp.Table)):
                name = table.name.lower()
                if name in named and name not in ctes and not isinstance(table.this, exp.Func):
                    view = sqlglot.parse_one(self._views[name].sql, read="duckdb")
                    table.replace(exp.paren(view).as_(table.alias or table.name))
            checked = sqlcheck.check(tree.sql("duckdb"), CATALOG_NAME, SCHEMA_NAME, self._limits)
        raise sqlcheck.ReadOnlyViolation(f"views nest more than {MAX_DEPTH} deep")

    def tables(self) -> Sequence[TableInfo]:
        tables = list(self._base.tables())
        for view in self._views.values():
            schema, engine = self._schema(view)
            tables.append(TableInfo(view.name, schema, (), engine, kind="VIEW"))
        return tables

    def _schema(self, view: View) -> tuple[pa.Schema, str]:
        """The view's columns, asked of its engine (none while its datasets are not Ready)."""
        try:
            checked = self.expand(
                sqlcheck.check(f'SELECT * FROM "{view.name}"', CATALOG_NAME, SCHEMA_NAME)
            )
            handle = self._base.handle_for(checked.tables)
            reader = handle.execute(f"SELECT * FROM ({checked.sql(handle.dialect)}) AS _v LIMIT 0")
            return reader.schema, handle.dialect
        except (DatasetNotReady, TableNotFound, CrossEngineQuery, QueryError):
            return pa.schema([]), ""

    def handle_for(self, table_names: Iterable[str]) -> QueryHandle:
        return self._base.handle_for(table_names)

    def close(self) -> None:
        close = getattr(self._base, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ViewCatalog:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
