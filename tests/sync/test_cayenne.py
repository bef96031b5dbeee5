"""Cayenne beyond the engine contract (tests/sync/test_accelerators.py runs that for it too):
crashes at any instant, files no commit lists, a second process reading while one writes,
types across schema evolution (checked against DuckDB), compaction, and its params."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flightsrv.config import ConfigError, parse_config
from sync.accelerators import sql
from sync.accelerators.base import open_accelerator
from sync.accelerators.cayenne import files, metastore
from sync.accelerators.cayenne.engine import DATA_DIR, CayenneAccelerator, CayenneError
from sync.accelerators.cayenne.spec import options
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.pipeline import STAGING_SUFFIX
from sync.schema import Column, ColumnType, DecimalType, ListType, StructType, TableSpec
from sync.settings import AccelerationSettings
from sync.snapshots import LocalStore, restore_newest
from tests.harness import wait_for

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
QUIET = {"cayenne_compaction_background_interval_ms": "0"}  # no background compaction


def settings(root: Path, **params: str) -> AccelerationSettings:
    return AccelerationSettings("cayenne", "file", root, options=options({**QUIET, **params}))


def checkpoint(sequence: str) -> Checkpoint:
    return Checkpoint(ARN, (ShardPosition(ARN, "shardId-0001", None, sequence),))


def spec_of(name: str = "t", *extra: Column) -> TableSpec:
    columns = (Column("pk", ColumnType.VARCHAR), Column("n", ColumnType.BIGINT))
    return TableSpec(name, columns + extra, ("pk",))


def batch(spec: TableSpec, rows: list[dict[str, Any]], at: Checkpoint | None) -> ChangeBatch:
    schema = pa.schema(
        [pa.field(OP_COLUMN, pa.int8(), nullable=False)]
        + [pa.field(c.name, c.type.arrow) for c in spec.columns]
    )
    data = [{OP_COLUMN: int(Op.UPSERT), **r} for r in rows]
    return ChangeBatch(pa.Table.from_pylist(data, schema), at, records=len(rows))


def load(accelerator: Any, spec: TableSpec, rows: list[dict[str, Any]], at: Checkpoint) -> None:
    staging = replace(spec, name=f"{spec.name}{STAGING_SUFFIX}")
    accelerator.create_table(staging)
    accelerator.apply(spec.name, staging, batch(staging, rows, None))
    accelerator.swap_in(spec.name, staging, spec.name, at)


def select(accelerator: Any, sql_text: str) -> list[dict[str, Any]]:
    return accelerator.query_handle().execute(sql_text).read_all().to_pylist()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cayenne"


@pytest.fixture
def cayenne(root: Path) -> Iterator[CayenneAccelerator]:
    with CayenneAccelerator(settings(root)) as accelerator:
        yield accelerator


# -- a writer in another process, killed at any instant -------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.sync.test_cayenne import load, batch, checkpoint, settings, spec_of
    from sync.accelerators.cayenne.engine import CayenneAccelerator

    root, keys, compact = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "compact"
    spec = spec_of()
    names = [f"k{i:06}" for i in range(keys)]
    accelerator = CayenneAccelerator(settings(root))
    at = accelerator.load_checkpoint("t")
    if at is None:
        load(accelerator, spec, [{"pk": k, "n": 0} for k in names], checkpoint("0"))
        version = 1
    else:
        version = int(at.shards[0].sequence_number) + 1
    while True:
        rows = []
        for i, k in enumerate(names):
            if i % 3 == 0:  # every third key deleted and back in the same batch
                rows.append({"_op": 2, "pk": k})
            rows.append({"pk": k, "n": version})
        accelerator.apply("t", spec, batch(spec, rows, checkpoint(str(version))))
        if compact and version % 2 == 0:
            accelerator.compact("t")
        version += 1
    """
)


def start_writer(root: Path, keys: int, compact: bool = False) -> subprocess.Popen[bytes]:
    repo = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(keys), "compact" if compact else "apply"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stderr=subprocess.PIPE,
    )


def committed_version(root: Path) -> int:
    """The checkpoint the metastore holds now (read as another process would: no lock)."""
    if not (root / metastore.FILENAME).exists():
        return -1
    con = metastore.connect(root)
    try:
        at = metastore.load_checkpoint(con, "t")
    except Exception:  # noqa: BLE001 - the tables are not created yet
        return -1
    finally:
        con.close()
    return -1 if at is None else int(at.shards[0].sequence_number or -1)


def assert_consistent(root: Path, keys: int) -> int:
    """Data and checkpoint agree after a crash, and no file lies outside the metastore."""
    with CayenneAccelerator(settings(root)) as accelerator:
        assert accelerator.writer
        at = accelerator.load_checkpoint("t")
        assert at is not None
        version = int(at.shards[0].sequence_number or -1)
        (row,) = select(accelerator, 'SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM "t"')
        assert row == {"c": keys, "lo": version, "hi": version}, (row, version)
        with metastore.transaction(accelerator._con, write=False):
            known = metastore.registered_names(accelerator._con)
        on_disk = set(os.listdir(root / DATA_DIR))
        assert on_disk <= known, on_disk - known
    return version


@pytest.mark.slow  # real processes killed and restarted, four times each
@pytest.mark.parametrize("compact", [False, True], ids=["apply", "compaction"])
def test_kill_9_at_any_instant_leaves_data_and_checkpoint_consistent(
    root: Path, compact: bool
) -> None:
    keys = 3000
    rng = random.Random(14)
    versions = []
    for _ in range(4):  # each kill lands somewhere else: file write, commit, compaction
        writer = start_writer(root, keys, compact)
        try:
            start = max(committed_version(root), 0)
            wait_for(lambda: committed_version(root) >= start + 2, 60, "two commits")  # noqa: B023
            time.sleep(rng.uniform(0, 0.3))
            writer.send_signal(signal.SIGKILL)
            assert writer.wait(10) == -signal.SIGKILL, writer.stderr.read() if writer.stderr else ""
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait(10)
            if writer.stderr:
                writer.stderr.close()
        versions.append(assert_consistent(root, keys))
    assert versions == sorted(versions) and versions[-1] > versions[0]


@pytest.mark.slow  # real processes killed four times while they load
def test_kill_9_during_a_load_leaves_no_table_or_the_whole_one(root: Path) -> None:
    keys = 40_000
    outcomes = []
    for delay in (0.5, 1.0, 1.5, 2.5):  # interpreter start, the load's write, its commit
        writer = start_writer(root, keys)
        try:
            time.sleep(delay)
        finally:
            writer.kill()
            writer.wait(10)
            if writer.stderr:
                writer.stderr.close()
        with CayenneAccelerator(settings(root)) as accelerator:
            loaded = accelerator.load_checkpoint("t") is not None
            assert loaded == (accelerator.table_spec("t") is not None)
        outcomes.append(assert_consistent(root, keys) if loaded else None)
        with CayenneAccelerator(settings(root)) as accelerator:  # the next round loads anew
            with metastore.transaction(accelerator._con):
                metastore.drop_table(accelerator._con, "t")
                metastore.drop_table(accelerator._con, f"t{STAGING_SUFFIX}")
                accelerator._con.execute(sql.CHECKPOINT_DELETE, ["t"])
    assert None in outcomes, "no kill landed before the load committed"


def test_files_no_commit_lists_are_removed_on_open(root: Path) -> None:
    with CayenneAccelerator(settings(root)) as accelerator:
        load(accelerator, spec_of(), [{"pk": "a", "n": 1}], checkpoint("1"))
        kept = {f.name for f in accelerator.files_of("t")}
    data = root / DATA_DIR
    stray, _ = files.write(data, pa.table({"x": [1]}))  # written, never registered
    (data / "half.vortex.tmp").write_bytes(b"\x00" * 10)  # a write cut short
    assert {stray, "half.vortex.tmp"} <= set(os.listdir(data))

    with CayenneAccelerator(settings(root)) as accelerator:
        assert set(os.listdir(data)) == kept
        assert select(accelerator, 'SELECT pk, n FROM "t"') == [{"pk": "a", "n": 1}]


def test_a_second_process_reads_while_the_first_writes(root: Path) -> None:
    keys = 2000
    writer = start_writer(root, keys)
    try:
        wait_for(lambda: committed_version(root) >= 1, 60, "the first commit")
        with CayenneAccelerator(settings(root)) as reader:
            assert not reader.writer  # the other process holds the writer lock
            with pytest.raises(CayenneError, match="only reads"):
                reader.apply("t", spec_of(), batch(spec_of(), [], checkpoint("x")))
            seen = set()
            deadline = time.monotonic() + 30
            while len(seen) < 5 and time.monotonic() < deadline:
                (row,) = select(reader, 'SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM "t"')
                assert row["c"] == keys and row["lo"] == row["hi"], f"half a batch: {row}"
                seen.add(row["lo"])
            assert len(seen) >= 5, f"the reader saw only versions {seen}"
    finally:
        writer.kill()
        writer.wait(10)
        if writer.stderr:
            writer.stderr.close()


# -- types across schema evolution, against DuckDB's own answers ----------------------------

SHAPES = [
    spec_of(
        "t",
        Column("st", StructType((("a", ColumnType.BIGINT),))),
        Column("l", ListType(ColumnType.BIGINT)),
        Column("d", DecimalType(9, 38)),
        Column("ts", ColumnType.TIMESTAMP),
        Column("dt", ColumnType.DATE),
        Column("doc", ColumnType.JSON),
        Column("raw", ColumnType.BLOB),
    )
]
SHAPES.append(
    SHAPES[0].with_columns(
        [
            Column("st", StructType((("a", ColumnType.BIGINT), ("b", ColumnType.VARCHAR)))),
            Column("n", ColumnType.DOUBLE),
            Column("added", ColumnType.VARCHAR),
        ]
    )
)
SHAPES.append(
    SHAPES[1].with_columns(
        [
            Column("st", ColumnType.JSON),
            Column("l", ColumnType.VARCHAR),
            Column("n", ColumnType.VARCHAR),
            Column("raw", ColumnType.VARCHAR),
        ]
    )
)
ROWS = [
    {
        "pk": "a",
        "n": 1,
        "st": {"a": 1},
        "l": [1, 2],
        "d": Decimal("12.5"),
        "ts": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        "dt": date(2026, 1, 2),
        "doc": '{"k": [1]}',
        "raw": b"\x00\xff",
    },
    {"pk": "b", "n": 2.5, "st": {"a": 2, "b": "x"}, "added": "new"},
    {"pk": "c", "n": "text", "st": '{"a": "z"}', "l": "[3]", "raw": "cmF3"},
]


def test_types_and_evolved_columns_read_as_duckdb_reads_them(root: Path) -> None:
    duck_settings = AccelerationSettings("duckdb", "memory")
    with open_accelerator(duck_settings) as duck, CayenneAccelerator(settings(root)) as cay:
        for engine in (duck, cay):
            load(engine, SHAPES[0], [ROWS[0]], checkpoint("0"))
            for version, (shape, row) in enumerate(zip(SHAPES[1:], ROWS[1:], strict=True)):
                engine.apply("t", shape, batch(shape, [row], checkpoint(str(version + 1))))
            again = batch(SHAPES[-1], [{"pk": "a", "d": Decimal(1)}], checkpoint("9"))
            engine.apply("t", SHAPES[-1], again)
        assert cay.table_spec("t") == duck.table_spec("t") == SHAPES[-1]
        sql_text = 'SELECT * FROM "t" ORDER BY pk'
        expected = duck.query_handle().execute(sql_text).read_all()
        got = cay.query_handle().execute(sql_text).read_all()
        assert got.schema == expected.schema
        assert got.to_pylist() == expected.to_pylist()
        assert len(cay.files_of("t")) == 4  # one file per batch, none rewritten


# -- compaction -----------------------------------------------------------------------------


def test_compaction_merges_files_drops_superseded_rows_and_keeps_retired_files_a_while(
    root: Path,
) -> None:
    with CayenneAccelerator(settings(root, cayenne_compaction_trigger_files="3")) as cay:
        spec = spec_of()
        load(cay, spec, [{"pk": f"k{i}", "n": 0} for i in range(100)], checkpoint("0"))
        cay.apply("t", spec, batch(spec, [{"pk": "k1", "n": 1}], checkpoint("1")))
        gone = [{OP_COLUMN: int(Op.DELETE), "pk": f"k{i}"} for i in range(50, 100)]
        cay.apply("t", spec, batch(spec, gone, checkpoint("2")))
        before = select(cay, 'SELECT * FROM "t" ORDER BY pk')
        old = {f.name for f in cay.files_of("t")}
        assert len(old) == 3

        assert cay.compact("t")

        (merged,) = cay.files_of("t")
        assert (merged.rows, merged.tombstones) == (50, 0)
        assert select(cay, 'SELECT * FROM "t" ORDER BY pk') == before
        assert old <= set(os.listdir(root / DATA_DIR)), "retired files went before the grace"
        cay.apply("t", spec, batch(spec, [{"pk": "k1", "n": 2}], checkpoint("3")))
        assert select(cay, "SELECT n FROM \"t\" WHERE pk = 'k1'") == [{"n": 2}]
        assert cay.load_checkpoint("t") == checkpoint("3")


def test_retired_files_are_deleted_after_the_grace_and_background_compaction_runs(
    root: Path,
) -> None:
    quick = settings(
        root,
        cayenne_compaction_trigger_files="2",
        cayenne_compaction_background_interval_ms="20",
    )
    quick = replace(quick, options={**(quick.options or {}), "retired_grace_ms": "0"})
    with CayenneAccelerator(quick) as cay:
        spec = spec_of()
        load(cay, spec, [{"pk": "a", "n": 0}], checkpoint("0"))
        first = {f.name for f in cay.files_of("t")}
        cay.apply("t", spec, batch(spec, [{"pk": "b", "n": 1}], checkpoint("1")))
        wait_for(lambda: len(cay.files_of("t")) == 1 and cay.compactions >= 1, 30, "a merge")
        wait_for(lambda: not first & set(os.listdir(root / DATA_DIR)), 30, "old files deleted")
        assert select(cay, 'SELECT pk, n FROM "t" ORDER BY pk') == [
            {"pk": "a", "n": 0},
            {"pk": "b", "n": 1},
        ]


# -- params ---------------------------------------------------------------------------------


def pod(acceleration: dict[str, Any]) -> dict[str, Any]:
    dataset = {
        "from": "dynamodb:orders",
        "name": "orders",
        "params": {"dynamodb_aws_region": "us-east-1"},
        "acceleration": {
            "enabled": True,
            "refresh_mode": "changes",
            "engine": "cayenne",
            **acceleration,
        },
    }
    return {"version": "v1", "kind": "Spicepod", "name": "demo", "datasets": [dataset]}


def test_spice_params_are_applied_refused_by_name_or_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    where = tmp_path / "spicepod.yaml"
    params = {
        "cayenne_file_path": "mirror",
        "cayenne_metadata_dir": "meta",
        "cayenne_target_file_size_mb": "64",
        "cayenne_compaction_trigger_files": "4",
    }
    (ds,) = parse_config(pod({"mode": "file", "params": params}), where).datasets
    assert ds.acceleration.file == tmp_path / "mirror"
    assert ds.acceleration.options is not None
    assert ds.acceleration.options["cayenne_target_file_size_mb"] == "64"
    assert ds.acceleration.options["cayenne_compaction_trigger_files"] == "4"

    for refused, pattern in [
        ({"mode": "memory"}, r"acceleration\.mode: cayenne keeps its tables in Vortex files"),
        (
            {"params": {"cayenne_deletion_mode": "position"}},
            r"params\.cayenne_deletion_mode: position deletes are not supported",
        ),
        (
            {"params": {"cayenne_compression_strategy": "zstd"}},
            r"params\.cayenne_compression_strategy: zstd is not available",
        ),
        ({"params": {"cayenne_target_file_size_mb": "0"}}, r"cayenne_target_file_size_mb"),
        ({"params": {"cayenne_no_such_param": "1"}}, r"cayenne_no_such_param"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            parse_config(pod(refused), where)

    with caplog.at_level(logging.WARNING, logger="flightsrv.config"):
        parse_config(pod({"params": {"cayenne_footer_cache_mb": "128"}}), where)
    assert "params.cayenne_footer_cache_mb: not applicable to cayenne" in caplog.text


# -- point lookups ----------------------------------------------------------------------------


@pytest.mark.parametrize("cache_mb", ["0", "256"])
def test_point_lookups_open_only_the_files_whose_key_range_holds_the_key(
    root: Path, cache_mb: str
) -> None:
    cayenne = CayenneAccelerator(settings(root, cayenne_segment_cache_mb=cache_mb))
    spec = spec_of()
    load(cayenne, spec, [{"pk": "k000", "n": 0}], checkpoint("0"))
    for page in range(10):  # ten files of disjoint key ranges
        rows = [{"pk": f"k{page}{i:02}", "n": page} for i in range(100)]
        cayenne.apply("t", spec, batch(spec, rows, checkpoint(str(page + 1))))
    cayenne.apply("t", spec, batch(spec, [{"pk": "k512", "n": 99}], checkpoint("11")))
    handle = cayenne.query_handle()

    def lookup(sql_text: str, *params: object) -> tuple[list[dict[str, Any]], int]:
        query = handle.start(sql_text, params)
        try:
            return query.reader.read_all().to_pylist(), query.files_opened
        finally:
            query.close()

    assert lookup('SELECT n FROM "t" WHERE pk = ?', "k305") == ([{"n": 3}], 1)
    assert lookup("SELECT n FROM t WHERE pk = 'k512'") == ([{"n": 99}], 2)  # and its update
    assert (
        lookup('SELECT pk FROM "t" AS x WHERE x.pk IN ($1, $2) ORDER BY pk', "k101", "k901")[1] == 2
    )
    assert lookup("SELECT n FROM t WHERE pk = 'zzz'") == ([], 0)
    # Shapes that are not a plain lookup read every file, and still answer right; with the
    # table kept resolved in memory, none.
    every = 0 if cache_mb != "0" else 12
    assert lookup("SELECT count(*) AS c FROM t WHERE pk = 'k305' OR pk = 'k512'") == (
        [{"c": 2}],
        every,
    )
    both = "SELECT a.n FROM t AS a JOIN t AS b ON a.pk = b.pk WHERE a.pk = 'k512'"
    assert lookup(both) == ([{"n": 99}], every)
    cayenne.close()


def test_lookups_on_many_change_files_read_only_the_files_holding_the_key(root: Path) -> None:
    spec = spec_of()
    with CayenneAccelerator(settings(root)) as writer, CayenneAccelerator(settings(root)) as reader:
        load(writer, spec, [{"pk": f"k{i:03}", "n": 0} for i in range(200)], checkpoint("0"))
        for i in range(10):  # each change file's key range spans the whole table
            rows = [{"pk": f"k{i:03}", "n": i + 1}, {"pk": f"k{199 - i:03}", "n": i + 1}]
            writer.apply("t", spec, batch(spec, rows, checkpoint(str(i + 1))))
        gone = [{OP_COLUMN: int(Op.DELETE), "pk": "k004"}, {"pk": "k150", "n": 99}]
        writer.apply("t", spec, batch(spec, gone, checkpoint("11")))
        assert len(writer.files_of("t")) == 12

        def lookup(accelerator: CayenneAccelerator, key: str) -> tuple[list[Any], int]:
            query = accelerator.query_handle().start("SELECT n FROM t WHERE pk = ?", [key])
            try:
                return [r["n"] for r in query.reader.read_all().to_pylist()], query.files_opened
            finally:
                query.close()

        for accelerator in (writer, reader):  # the reader indexes the files it had not
            assert lookup(accelerator, "k050") == ([0], 1)
            assert lookup(accelerator, "k003") == ([4], 2)
            assert lookup(accelerator, "k196") == ([4], 2)
            assert lookup(accelerator, "k004") == ([], 3)  # loaded, updated, deleted
            assert lookup(accelerator, "k150") == ([99], 2)
            assert lookup(accelerator, "k200") == ([], 0)
        # A commit is seen by the next query of either process.
        writer.apply("t", spec, batch(spec, [{"pk": "k050", "n": 7}], checkpoint("12")))
        assert lookup(reader, "k050") == ([7], 2)
        assert lookup(writer, "k050") == ([7], 2)
        writer.compact("t")
        assert lookup(reader, "k050") == ([7], 1)
        assert lookup(reader, "k004") == ([], 0)


@pytest.mark.parametrize("size", [10, files.SMALL_FILE + 10])  # Python list; Arrow array
def test_key_indexes_find_every_row_of_a_key_in_any_order(size: int) -> None:
    keys = [f"k{i % (size // 2):06}" for i in range(size)]  # each key twice
    random.Random(3).shuffle(keys)
    for column in (pa.array(keys, pa.string_view()), pa.array(sorted(keys))):
        index = files.KeyIndex(column)
        values = column.to_pylist()
        for key in ("k000000", f"k{size // 2 - 1:06}", "k000003"):
            assert index.rows_of([key]) == [i for i, v in enumerate(values) if v == key]
        assert index.rows_of(["a", "z"]) == []
        both = index.rows_of(["k000001", "k000002"])
        assert both == sorted(i for i, v in enumerate(values) if v in ("k000001", "k000002"))


def test_queries_during_background_compaction_see_whole_batches(root: Path) -> None:
    busy = settings(
        root,
        cayenne_compaction_trigger_files="2",
        cayenne_compaction_background_interval_ms="10",
    )
    # Merged-away files go a second after: queries running then (a few ms each) are done.
    busy = replace(busy, options={**(busy.options or {}), "retired_grace_ms": "1000"})
    keys = [f"k{i:04}" for i in range(500)]
    spec = spec_of()
    seen: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    with CayenneAccelerator(busy) as cay:
        load(cay, spec, [{"pk": k, "n": 0} for k in keys], checkpoint("0"))
        stop = threading.Event()

        def read() -> None:
            try:
                while not stop.is_set():
                    seen.extend(
                        select(cay, 'SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM "t"')
                    )
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for version in range(1, 31):
                rows = [{"pk": k, "n": version} for k in keys]
                rows += [{OP_COLUMN: int(Op.DELETE), "pk": k} for k in keys[:50]]
                rows += [{"pk": k, "n": version} for k in keys[:50]]
                cay.apply("t", spec, batch(spec, rows, checkpoint(str(version))))
                time.sleep(0.01)
        finally:
            stop.set()
            reader.join(30)
        assert not errors, errors
        assert cay.compactions >= 1
        assert seen and all(r["c"] == len(keys) and r["lo"] == r["hi"] for r in seen), seen
        assert select(cay, 'SELECT min(n) AS lo, max(n) AS hi FROM "t"') == [{"lo": 30, "hi": 30}]


def test_few_changes_next_to_a_large_base_merge_among_themselves(
    cayenne: CayenneAccelerator,
) -> None:
    spec = spec_of()
    load(cayenne, spec, [{"pk": f"k{i:04}", "n": 0} for i in range(1000)], checkpoint("0"))
    (base,) = cayenne.files_of("t")
    cayenne.apply("t", spec, batch(spec, [{"pk": "k0001", "n": 1}], checkpoint("1")))
    gone = [{OP_COLUMN: int(Op.DELETE), "pk": "k0002"}, {"pk": "k0001", "n": 2}]
    cayenne.apply("t", spec, batch(spec, gone, checkpoint("2")))
    cayenne.apply("t", spec, batch(spec, [{"pk": "new", "n": 3}], checkpoint("3")))
    before = select(cayenne, 'SELECT * FROM "t" ORDER BY pk')

    assert cayenne.compact("t")

    kept, merged = cayenne.files_of("t")
    assert kept == base  # the base file is not rewritten
    assert (merged.base, merged.rows, merged.tombstones) == (False, 3, 1)  # k0002's kept
    assert select(cayenne, 'SELECT * FROM "t" ORDER BY pk') == before
    assert len(before) == 1000 and {"pk": "k0001", "n": 2} in before
    assert select(cayenne, "SELECT n FROM t WHERE pk = 'k0002'") == []


# -- tables kept resolved in memory ---------------------------------------------------------


def test_tables_kept_resolved_follow_every_kind_of_commit_exactly(root: Path) -> None:
    """Change batches, both kinds of compaction, an added column and a reload, in random
    order: after each, the resolved table (reached commit by commit) equals a model of the
    table and what a reader without the cache resolves from the files."""
    rng = random.Random(5)
    spec = spec_of()
    model: dict[str, dict[str, Any]] = {}
    with (
        CayenneAccelerator(settings(root)) as writer,
        CayenneAccelerator(settings(root, cayenne_segment_cache_mb="0")) as plain,
    ):

        def reload() -> None:
            model.clear()
            for i in rng.sample(range(400), 300):
                model[f"k{i:03}"] = dict.fromkeys(spec.column_names) | {
                    "pk": f"k{i:03}",
                    "n": rng.randrange(1000),
                }
            load(writer, spec, list(model.values()), checkpoint(str(step)))

        step = 0
        reload()
        for step in range(1, 60):
            choice = rng.random()
            if choice < 0.08:
                reload()
            elif choice < 0.16:
                assert writer.compact("t") or len(writer.files_of("t")) < 2
            else:
                if choice < 0.2 and len(spec.columns) < 5:  # this batch adds a column
                    spec = spec_of("t", *spec.columns[2:], Column(f"c{step}", ColumnType.VARCHAR))
                    for row in model.values():
                        row[f"c{step}"] = None
                rows: list[dict[str, Any]] = []
                for _ in range(rng.randrange(1, 30)):  # keys repeat: the last one wins
                    key = f"k{rng.randrange(450):03}"
                    if rng.random() < 0.25:
                        rows.append({OP_COLUMN: int(Op.DELETE), "pk": key})
                        model.pop(key, None)
                    else:
                        row = dict.fromkeys(spec.column_names) | {"pk": key, "n": step}
                        if len(spec.columns) > 2:
                            row[spec.columns[-1].name] = f"v{step}"
                        rows.append(row)
                        model[key] = row
                writer.apply("t", spec, batch(spec, rows, checkpoint(str(step))))
            if rng.random() < 0.7:  # not after every commit: several then one catch-up
                expected = sorted(model.values(), key=lambda r: r["pk"])
                got = select(writer, 'SELECT * FROM "t" ORDER BY pk')
                assert got == expected, f"step {step}"
                assert select(plain, 'SELECT * FROM "t" ORDER BY pk') == expected
        held = writer._resolved._tables["t"]  # noqa: SLF001 - the cache this test is about
        assert held.rows.num_rows == len(model)


def test_a_table_over_the_cache_budget_is_read_from_its_files(root: Path) -> None:
    spec = spec_of()
    with CayenneAccelerator(settings(root, cayenne_segment_cache_mb="1")) as cayenne:
        rows = [{"pk": f"key-{i:08}-{'x' * 40}", "n": i} for i in range(30_000)]  # ~2 MB
        load(cayenne, spec, rows, checkpoint("0"))
        for _ in range(2):
            query = cayenne.query_handle().start("SELECT count(*) AS c, sum(n) AS s FROM t")
            try:
                assert query.reader.read_all().to_pylist() == [
                    {"c": 30_000, "s": sum(range(30_000))}
                ]
                assert query.files_opened == len(cayenne.files_of("t"))
            finally:
                query.close()


# -- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("separate_metadata", [False, True], ids=["one-dir", "metadata-dir"])
def test_a_snapshot_restored_in_place_of_the_directory_opens_with_tables_and_checkpoints(
    tmp_path: Path, separate_metadata: bool
) -> None:
    meta = {"cayenne_metadata_dir": str(tmp_path / "meta")} if separate_metadata else {}
    source = CayenneAccelerator(settings(tmp_path / "a.cayenne", **meta))
    with source:
        spec = spec_of()
        load(source, spec, [{"pk": f"k{i}", "n": i} for i in range(100)], checkpoint("1"))
        gone = [{OP_COLUMN: int(Op.DELETE), "pk": "k5"}, {"pk": "k6", "n": 66}]
        source.apply("t", spec, batch(spec, gone, checkpoint("2")))
        expected = select(source, 'SELECT * FROM "t" ORDER BY pk')
        store = LocalStore(tmp_path / "snapshots")
        snap = tmp_path / "copy.tar"
        source.snapshot(snap)
        store.put("b.cayenne", snap)

    target = tmp_path / "restored" / "b.cayenne"
    restore_meta = {"cayenne_metadata_dir": str(tmp_path / "meta2")} if separate_metadata else {}
    assert restore_newest(store, target, "warn") is not None
    assert target.is_file()
    with CayenneAccelerator(settings(target, **restore_meta)) as restored:
        assert target.is_dir()
        assert restored.load_checkpoint("t") == checkpoint("2")
        assert restored.table_spec("t") == spec
        assert select(restored, 'SELECT * FROM "t" ORDER BY pk') == expected
        restored.apply("t", spec, batch(spec, [{"pk": "k7", "n": 77}], checkpoint("3")))
        assert select(restored, "SELECT n FROM t WHERE pk = 'k7'") == [{"n": 77}]
