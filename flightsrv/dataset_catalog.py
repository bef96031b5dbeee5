"""The served catalog: running dataset syncs, resolved to their accelerators' query handles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

from flightsrv.flightsql.catalog import (
    CrossEngineQuery,
    DatasetNotReady,
    TableInfo,
    TableNotFound,
)
from sync.accelerators.base import Accelerator, open_accelerator
from sync.accelerators.query import QueryHandle
from sync.pipeline import DatasetNotQueryable, DatasetSync
from sync.settings import AccelerationSettings

# Table-less queries (``SELECT 1``) run here, never in a mirror's database.
SCRATCH = AccelerationSettings("duckdb", "memory")


class DatasetCatalog:
    """Implements :class:`flightsrv.flightsql.catalog.Catalog` over :class:`DatasetSync`\\ s.

    The datasets' accelerators belong to whoever opened them (a :class:`sync.fleet.DatasetFleet`);
    the catalog owns only the in-memory scratch database that answers table-less queries, released
    by :meth:`close`.
    """

    def __init__(self, datasets: Sequence[DatasetSync]) -> None:
        self._datasets = {d.settings.name.lower(): d for d in datasets}
        self._scratch: Accelerator = open_accelerator(SCRATCH)

    def tables(self) -> Sequence[TableInfo]:
        tables = []
        for dataset in self._datasets.values():
            spec = dataset.spec
            if spec is None:
                continue
            tables.append(
                TableInfo(
                    spec.name,
                    spec.arrow_schema(),
                    spec.key,
                    dataset.settings.acceleration.engine,
                )
            )
        return tables

    def handle_for(self, table_names: Iterable[str]) -> QueryHandle:
        names = sorted({n.lower() for n in table_names})
        if not names:
            return self._scratch.query_handle()
        missing = [n for n in names if n not in self._datasets]
        if missing:
            raise TableNotFound(
                f"table {missing[0]!r} not found; served tables: "
                f"{', '.join(sorted(self._datasets)) or 'none'}"
            )
        datasets = [self._datasets[n] for n in names]
        for dataset in datasets:
            try:
                dataset.check_queryable()
            except DatasetNotQueryable as e:
                raise DatasetNotReady(str(e)) from e
        if len(datasets) > 1 and len({d.settings.acceleration.location for d in datasets}) > 1:
            where = ", ".join(  # engines only: a client never sees a server path
                f"{d.settings.name} ({d.settings.acceleration.engine})" for d in datasets
            )
            raise CrossEngineQuery(
                f"the query joins tables held in different accelerator databases: {where}; "
                "put them in the same engine and file to join them"
            )
        return datasets[0].accelerator.query_handle()

    def close(self) -> None:
        """Release the scratch database; idempotent."""
        self._scratch.close()

    def __enter__(self) -> DatasetCatalog:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
