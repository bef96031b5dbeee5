"""``DatasetFleet``: the datasets of one process, over the accelerators they share.

Datasets with one location (engine and file, an engine in memory, or one PostgreSQL database)
share a single accelerator, so queries can join them; each location's file is restored from
the newest snapshot first when it is missing and its datasets may start from one. A dataset on
an engine other runtimes may share (:class:`sync.lease.SharedEngine`) gets a lease, always:
two writers on one database are never right.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

from sync.accelerators.base import Accelerator, open_accelerator
from sync.lease import DEFAULT_LEASE_TIMEOUT_S, SharedEngine
from sync.pipeline import STAGING_SUFFIX, DatasetSync
from sync.settings import DatasetSettings
from sync.snapshots import (
    SnapshotSettings,
    Snapshotter,
    SupportsSnapshot,
    open_store,
    restore_newest,
)

log = logging.getLogger(__name__)


class DatasetFleet:
    """Opens each location's accelerator once and builds one :class:`DatasetSync` per dataset.

    Construction restores snapshots and opens the engines; nothing runs until :meth:`start`.
    :meth:`stop` stops the syncs (in-flight batches commit or roll back) and waits for snapshot
    uploads; :meth:`close` stops them too, then closes the engines. Both are idempotent.

    Args:
        datasets: every dataset's settings, in the order they are served.
        snapshots: where snapshots are kept, when the process has a ``snapshots`` block.
        lease_timeout_s: on a shared engine, how soon another runtime syncs a dataset after
            the one syncing it dies.
        follow_only: sync nothing; serve what another process of this machine syncs.
        followed: other processes of this machine follow what these datasets commit.

    Raises:
        SnapshotRestoreError: a snapshot could not be restored and ``on_failure`` is ``retry``.
        Exception: whatever an engine raises when it cannot be opened. Either way, the
            accelerators opened before are closed again.
    """

    def __init__(
        self,
        datasets: Sequence[DatasetSettings],
        snapshots: SnapshotSettings | None = None,
        *,
        lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S,
        follow_only: bool = False,
        followed: bool = False,
    ) -> None:
        self._lease_timeout_s = lease_timeout_s
        self._follow_only = follow_only
        self._followed = followed
        self._accelerators: dict[str, Accelerator] = {}
        self._snapshotters: dict[str, Snapshotter] = {}
        self.datasets: list[DatasetSync] = []
        self._started = False
        try:
            self._open(datasets, snapshots)
        except BaseException:
            self._close_accelerators()
            raise

    def _open(
        self, datasets: Sequence[DatasetSettings], snapshots: SnapshotSettings | None
    ) -> None:
        store = open_store(snapshots) if snapshots is not None else None
        for settings in datasets:
            location = settings.acceleration.location
            accelerator = self._accelerators.get(location)
            if accelerator is None:
                file = settings.acceleration.file
                # Only a missing file is restored: an existing one is at least as new as any
                # snapshot of it, and its own checkpoint says where to resume.
                if (
                    store is not None
                    and snapshots is not None
                    and file is not None
                    and settings.snapshots.bootstraps
                    and not file.exists()
                ):
                    restore_newest(store, file, snapshots.on_failure)
                accelerator = open_accelerator(settings.acceleration)
                self._accelerators[location] = accelerator
            snapshotter = None
            if (
                store is not None
                and settings.snapshots.creates
                and isinstance(accelerator, SupportsSnapshot)
            ):
                assert settings.acceleration.file is not None
                snapshotter = self._snapshotters.setdefault(
                    location, Snapshotter(accelerator, settings.acceleration.file, store)
                )
            lease = None
            if isinstance(accelerator, SharedEngine) and not self._follow_only:
                name = settings.name
                lease = accelerator.lease(
                    name, (name, f"{name}{STAGING_SUFFIX}"), self._lease_timeout_s
                )
            self.datasets.append(
                DatasetSync(
                    settings,
                    accelerator,
                    None if self._follow_only else snapshotter,
                    lease=lease,
                    follow_only=self._follow_only,
                    followed=self._followed,
                )
            )

    def start(self) -> None:
        """Start every dataset's sync on its own thread."""
        self._started = True
        for dataset in self.datasets:
            dataset.start()

    def stop(self) -> None:
        """Stop every sync after its in-flight batch, then wait for snapshot uploads."""
        if not self._started:
            return
        self._started = False
        for dataset in self.datasets:
            dataset.stop()
        for snapshotter in self._snapshotters.values():
            snapshotter.wait()

    def close(self) -> None:
        """Stop the syncs if they run, then close every accelerator; idempotent."""
        self.stop()
        self._close_accelerators()

    def _close_accelerators(self) -> None:
        accelerators = list(self._accelerators.values())
        self._accelerators.clear()
        for accelerator in accelerators:
            try:
                accelerator.close()
            except Exception:  # noqa: BLE001 - the other engines are still closed
                log.exception("closing the accelerator %s failed", accelerator.engine)

    def __enter__(self) -> DatasetFleet:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
