"""Acceleration snapshots: consistent copies of a file accelerator, checkpoint inside.

A snapshot is the engine's database file copied while no batch is being applied, so the data
and the stream checkpoint in it agree. It is written atomically — a temporary name then a
rename in a directory, or the object then a manifest on S3 — and a dataset starting without
its file can bootstrap from the newest one, then resume the stream from the checkpoint inside
(or apply the retention behaviour if that checkpoint is too old).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

log = logging.getLogger(__name__)

OnFailure = Literal["warn", "retry", "fallback"]
KEEP = 5  # snapshots kept per database file; older ones are deleted
RETRY_ATTEMPTS = 5


class SnapshotRestoreError(Exception):
    """A snapshot could not be restored and ``bootstrap_on_failure_behavior`` is ``retry``."""


@runtime_checkable
class SupportsSnapshot(Protocol):
    """An accelerator that can copy its database file consistently."""

    def snapshot(self, dest: Path) -> None:
        """Copy the database, data and checkpoints, to ``dest`` while no batch is applied."""
        ...


@dataclass(frozen=True)
class SnapshotSettings:
    location: str  # a directory, or s3://bucket/prefix
    on_failure: OnFailure = "warn"
    region: str | None = None
    endpoint_url: str | None = None


class SnapshotStore(Protocol):
    def put(self, database: str, source: Path) -> str:
        """Store ``source`` as the newest snapshot of ``database``; returns its name."""
        ...

    def names(self, database: str) -> list[str]:
        """Snapshot names of ``database``, newest first."""
        ...

    def fetch(self, database: str, name: str, dest: Path) -> None: ...


def _new_name(suffix: str) -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + suffix


class LocalStore:
    """Snapshots in ``<dir>/<database file name>/<UTC time><suffix>``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def put(self, database: str, source: Path) -> str:
        folder = self._root / database
        folder.mkdir(parents=True, exist_ok=True)
        name = _new_name(Path(database).suffix)
        partial = folder / f".{name}.partial"
        shutil.copyfile(source, partial)
        os.replace(partial, folder / name)  # atomic: readers never see a partial snapshot
        for old in self.names(database)[KEEP:]:
            (folder / old).unlink(missing_ok=True)
        return name

    def names(self, database: str) -> list[str]:
        folder = self._root / database
        if not folder.is_dir():
            return []
        return sorted(
            (p.name for p in folder.iterdir() if not p.name.startswith(".")), reverse=True
        )

    def fetch(self, database: str, name: str, dest: Path) -> None:
        shutil.copyfile(self._root / database / name, dest)


class S3Store:
    """Snapshots under ``s3://bucket/prefix/<database>/``; ``manifest.json`` lists the
    complete ones, newest first, and is written only after the object upload finished."""

    def __init__(self, url: str, client: Any) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client

    def _key(self, database: str, name: str) -> str:
        return "/".join(p for p in (self._prefix, database, name) if p)

    def put(self, database: str, source: Path) -> str:
        name = _new_name(Path(database).suffix)
        self._client.upload_file(str(source), self._bucket, self._key(database, name))
        names = [name, *self.names(database)]
        body = json.dumps({"snapshots": names[:KEEP]}).encode()
        self._client.put_object(
            Bucket=self._bucket, Key=self._key(database, "manifest.json"), Body=body
        )
        for old in names[KEEP:]:
            self._client.delete_object(Bucket=self._bucket, Key=self._key(database, old))
        return name

    def names(self, database: str) -> list[str]:
        try:
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key(database, "manifest.json")
            )["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return []
        return list(json.loads(body)["snapshots"])

    def fetch(self, database: str, name: str, dest: Path) -> None:
        self._client.download_file(self._bucket, self._key(database, name), str(dest))


def open_store(settings: SnapshotSettings) -> SnapshotStore:
    if settings.location.startswith("s3://"):
        import boto3

        client = boto3.client("s3", region_name=settings.region, endpoint_url=settings.endpoint_url)
        return S3Store(settings.location, client)
    return LocalStore(Path(settings.location))


def restore_newest(store: SnapshotStore, target: Path, on_failure: OnFailure) -> str | None:
    """Put the newest snapshot of ``target``'s database at ``target`` (which must not exist).

    Returns the snapshot's name, or None when there is none or it could not be fetched and
    ``on_failure`` lets the dataset bootstrap from DynamoDB instead.

    Raises:
        SnapshotRestoreError: ``on_failure`` is ``retry`` and every attempt failed.
    """
    database = target.name
    names = store.names(database)
    if not names:
        return None
    candidates = names if on_failure == "fallback" else names[:1]
    attempts = RETRY_ATTEMPTS if on_failure == "retry" else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for name in candidates:
        for attempt in range(attempts):
            partial = target.with_name(f".{target.name}.restoring")
            try:
                store.fetch(database, name, partial)
                os.replace(partial, target)
                log.info("restored %s from snapshot %s", target, name)
                return name
            except Exception as e:  # noqa: BLE001 - any store failure follows on_failure
                last = e
                partial.unlink(missing_ok=True)
                log.warning("snapshot %s of %s not restored: %s", name, database, e)
                if attempt + 1 < attempts:
                    time.sleep(min(10.0, 0.5 * 2**attempt))
    if on_failure == "retry":
        raise SnapshotRestoreError(
            f"snapshot {candidates[0]} of {database} could not be restored after "
            f"{attempts} attempts: {last}"
        )
    log.warning("bootstrapping %s from DynamoDB instead of a snapshot", database)
    return None


class Snapshotter:
    """Takes snapshots of one accelerator file: the copy on the caller's thread (no batch can
    be applied meanwhile), the upload on a background thread so the stream waits only for the
    copy of one file."""

    def __init__(
        self,
        accelerator: SupportsSnapshot,
        database: Path,
        store: SnapshotStore,
    ) -> None:
        self._accelerator = accelerator
        self._database = database
        self._store = store
        self._uploading = threading.Lock()
        self.last: tuple[str, float] | None = None  # newest snapshot written: (name, epoch s)

    def take(self) -> bool:
        """Snapshot now; False (skipped) while the previous upload is still running."""
        if not self._uploading.acquire(blocking=False):
            return False
        try:
            fd, name = tempfile.mkstemp(prefix=".snapshot-", dir=self._database.parent)
            os.close(fd)
            copy = Path(name)
            self._accelerator.snapshot(copy)
        except BaseException:
            self._uploading.release()
            raise
        threading.Thread(target=self._upload, args=(copy,), name="snapshot-upload").start()
        return True

    def _upload(self, copy: Path) -> None:
        try:
            name = self._store.put(self._database.name, copy)
            log.info("snapshot %s of %s written", name, self._database.name)
            self.last = (name, time.time())
        except Exception:  # noqa: BLE001 - a failed snapshot is logged, the stream goes on
            log.exception("snapshot of %s failed", self._database.name)
        finally:
            copy.unlink(missing_ok=True)
            self._uploading.release()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for a running upload (at shutdown)."""
        if self._uploading.acquire(timeout=timeout):
            self._uploading.release()
