"""What the Flight SQL server needs to know about the datasets it serves: the interface.

:class:`flightsrv.dataset_catalog.DatasetCatalog` implements it over running dataset syncs;
tests implement it over plain engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa

from sync.accelerators.query import QueryHandle

if TYPE_CHECKING:
    from flightsrv.flightsql.sqlcheck import CheckedQuery


@dataclass(frozen=True)
class TableInfo:
    """One served table: a dataset's SQL table as clients see it."""

    name: str
    schema: pa.Schema
    primary_key: tuple[str, ...]
    engine: str  # duckdb | sqlite | postgres
    kind: str = "TABLE"  # TABLE, or VIEW for a view of the spicepod's views:


class TableNotFound(Exception):
    """A query named a table that no dataset serves."""


class DatasetNotReady(Exception):
    """A query touched a dataset that is not Ready; the message says why."""


class CrossEngineQuery(Exception):
    """A query joined tables that live in different accelerator databases."""


@runtime_checkable
class ExpandsViews(Protocol):
    """A catalog serving views: a checked query naming one becomes the query with the view's
    SQL in its place (checked again), before its tables are looked up."""

    def expand(self, checked: CheckedQuery) -> CheckedQuery: ...


class Catalog(Protocol):
    """The served datasets, as the Flight SQL server sees them."""

    def tables(self) -> Sequence[TableInfo]:
        """Every served table, Ready or not, with its current schema."""
        ...

    def handle_for(self, table_names: Iterable[str]) -> QueryHandle:
        """The query handle of the one accelerator database holding all ``table_names``.

        Names match case-insensitively. An empty set gets a handle able to run table-less
        queries (``SELECT 1``).

        Raises:
            TableNotFound: a name is not a served table.
            DatasetNotReady: a named dataset is not Ready (message: bootstrapping 40 %, lag …).
            CrossEngineQuery: the tables live in different accelerator databases.
        """
        ...
