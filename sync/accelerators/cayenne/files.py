"""Immutable Vortex data files: written under a temporary name, made durable, then renamed,
so a file with a final name is always whole. A file counts only once the metastore lists it."""

from __future__ import annotations

import bisect
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
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
SMALL_FILE = 16 * 1024  # rows: a file this small keeps its key index as Python values


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


class KeyIndex:
    """A file's first key column in ascending order, with the row each value is at: a lookup
    finds a key's rows by binary search, without reading the file."""

    def __init__(self, keys: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        if pa.types.is_string_view(keys.type):  # as Vortex reads text: Arrow cannot sort it
            keys = keys.cast(pa.string())
        self._rows: pa.Array | None = None  # None: the file is in key order
        if len(keys) > 1 and not pc.all(pc.less_equal(keys[:-1], keys[1:])).as_py():
            self._rows = pc.sort_indices(keys)
            keys = keys.take(self._rows)
        self._keys = keys
        # A small file's keys as Python values (a change batch's): searched by the bisect
        # module at C speed, for a few hundred bytes per key.
        self._values: list[object] | None = keys.to_pylist() if len(keys) <= SMALL_FILE else None

    @staticmethod
    def indexable(kind: pa.DataType) -> bool:
        """Whether Python compares values of ``kind`` as Arrow sorts them (bytewise text,
        bytes, integers), which the binary search relies on."""
        return (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_integer(kind)
        )

    def rows_of(self, values: Sequence[object]) -> list[int]:
        """The rows (ascending) whose key is one of ``values``."""
        found: list[int] = []
        for value in set(values):
            low = self._bisect(value, right=False)
            high = self._bisect(value, right=True)
            found.extend(range(low, high))
        if self._rows is not None:
            found = [self._rows[i].as_py() for i in found]
        return sorted(set(found))

    def _bisect(self, value: object, right: bool) -> int:
        if self._values is not None:
            search = bisect.bisect_right if right else bisect.bisect_left
            return search(self._values, value)  # type: ignore[call-overload]
        keys, low, high = self._keys, 0, len(self._keys)
        while low < high:
            middle = (low + high) // 2
            here = keys[middle].as_py()
            if here < value or (right and here == value):
                low = middle + 1
            else:
                high = middle
        return low


class FileCache:
    """Opened files and their key indexes, by file name, shared by a process's queries.

    Files never change under a name, so an entry stays right as long as the file lives;
    :meth:`keep_only` drops the entries of files no committed set lists any more. A key
    index holds one column of the file in memory (about 10 MB per million short keys).
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, vortex.VortexFile] = {}
        self._indexes: dict[str, KeyIndex] = {}
        self._scans: dict[str, vortex.RepeatedScan] = {}
        self._generation: object = None

    def open(self, name: str) -> vortex.VortexFile:
        with self._lock:
            file = self._files.get(name)
        if file is None:
            file = vortex.open(str(self._directory / name))
            with self._lock:
                file = self._files.setdefault(name, file)
        return file

    def dataset(self, name: str) -> pads.Dataset:
        """The file as an Arrow dataset: DuckDB scans it with projection and filter
        pushdown."""
        return self.open(name).to_dataset()

    def prime(self, name: str, keys: pa.Array | pa.ChunkedArray) -> None:
        """Index a file just written from its key column (saves reading it back)."""
        if KeyIndex.indexable(keys.type):
            index = KeyIndex(keys)
            with self._lock:
                self._indexes[name] = index

    def index(self, name: str, column: str) -> KeyIndex:
        with self._lock:
            index = self._indexes.get(name)
        if index is None:
            keys = self.open(name).to_arrow(projection=[column]).read_all().column(column)
            index = KeyIndex(keys)
            with self._lock:
                index = self._indexes.setdefault(name, index)
        return index

    def rows(self, name: str, column: str, values: Sequence[object]) -> pa.Table | None:
        """The rows of the file whose ``column`` (its first key column, of an indexable
        type) is one of ``values``; None if it holds none (the file is then not read)."""
        found = self.index(name, column).rows_of(values)
        if not found:
            return None
        if found[-1] - found[0] + 1 == len(found):  # one run of rows: the usual lookup
            scan = self._scan(name)
            return scan.execute(row_range=(found[0], found[-1] + 1)).read_all().to_arrow_table()
        indices = vortex.array(pa.array(found, pa.uint64()))
        return self.open(name).to_arrow(indices=indices).read_all()

    def _scan(self, name: str) -> vortex.RepeatedScan:
        """A scan of the whole file prepared once, reading any run of rows at a time."""
        with self._lock:
            scan = self._scans.get(name)
        if scan is None:
            scan = self.open(name).to_repeated_scan()
            with self._lock:
                scan = self._scans.setdefault(name, scan)
        return scan

    def follow(self, generation: object, names: Callable[[], set[str]]) -> None:
        """Keep only the files ``names()`` lists, once per ``generation`` (a committed
        set): entries of files merged away go when a query first sees the set without them.
        """
        with self._lock:
            if generation is self._generation:
                return
            self._generation = generation
        self.keep_only(names())

    def keep_only(self, names: set[str]) -> None:
        with self._lock:
            for cache in (self._files, self._indexes, self._scans):
                for name in [n for n in cache if n not in names]:
                    del cache[name]


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
