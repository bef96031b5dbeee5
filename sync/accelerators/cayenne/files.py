"""Immutable Vortex data files: written under a temporary name, made durable, then renamed,
so a file with a final name is always whole. A file counts only once the metastore lists it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

try:
    import vortex
    import vortex.expr
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "engine: cayenne needs the vortex-data package: pip install 'dynamirror[cayenne]'"
    ) from e

SUFFIX = ".vortex"
TEMP_SUFFIX = ".tmp"


def write(directory: Path, data: pa.Table | pa.RecordBatchReader) -> tuple[str, int]:
    """Write ``data`` to a new file in ``directory``; its name and size in bytes.

    The file and its directory entry are fsync'd before this returns: a commit that lists it
    never lists a file a crash can lose.
    """
    name = f"{uuid.uuid4().hex}{SUFFIX}"
    temp = directory / f"{name}{TEMP_SUFFIX}"
    vortex.io.write(data, str(temp))
    _fsync(temp)
    os.replace(temp, directory / name)
    _fsync(directory)
    return name, (directory / name).stat().st_size


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dataset(directory: Path, name: str) -> pads.Dataset:
    """The file as an Arrow dataset: DuckDB scans it with projection and filter pushdown."""
    return vortex.open(str(directory / name)).to_dataset()


def lookup(directory: Path, name: str, column: str, values: list[str] | list[int]) -> pa.Table:
    """The rows of the file whose ``column`` is one of ``values``, filtered by Vortex itself
    (its per-chunk statistics skip most of the file)."""
    predicate = None
    for value in values:
        test = vortex.expr.column(column) == value
        predicate = test if predicate is None else vortex.expr.or_(predicate, test)
    return vortex.open(str(directory / name)).to_arrow(expr=predicate).read_all()


def remove_unregistered(directory: Path, registered: set[str]) -> list[str]:
    """Delete the files in ``directory`` the metastore does not know (written by a batch that
    never committed, or half-written); their names."""
    removed = []
    for path in directory.iterdir():
        if path.name.endswith((SUFFIX, TEMP_SUFFIX)) and path.name not in registered:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def delete(directory: Path, names: Iterable[str]) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)
