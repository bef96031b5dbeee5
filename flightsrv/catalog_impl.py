"""The served catalog: the runtime's datasets, resolved to their accelerators' query handles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from flightsrv.catalog import CrossEngineQuery, DatasetNotReady, TableInfo, TableNotFound
from sync.accelerators.base import Accelerator
from sync.accelerators.query import QueryHandle
from sync.pipeline import DatasetNotQueryable, DatasetSync


class DatasetCatalog:
    """Implements :class:`flightsrv.catalog.Catalog` over running :class:`DatasetSync`\\ s.

    ``scratch`` answers table-less queries (``SELECT 1``) without touching any mirror.
    """

    def __init__(self, datasets: Sequence[DatasetSync], scratch: Accelerator) -> None:
        self._datasets = {d.settings.name.lower(): d for d in datasets}
        self._scratch = scratch

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
            where = ", ".join(
                f"{d.settings.name} ({d.settings.acceleration.location})" for d in datasets
            )
            raise CrossEngineQuery(
                f"the query joins tables held in different accelerator databases: {where}; "
                "put them in the same engine and file to join them"
            )
        return datasets[0].accelerator.query_handle()
