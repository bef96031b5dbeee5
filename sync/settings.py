"""Typed, validated settings of one dataset's sync, built once from ``spicepod.yaml``.

``sync`` reads no environment and no YAML: ``flightsrv.config`` builds these and passes them
down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sync.accelerators import engine_spec
from sync.accelerators.spec import Mode
from sync.schema import DeclaredColumn, Index

RetentionBehavior = Literal["error", "ready_before_load", "ready_after_load"]
InitialLoad = Literal["scan", "export", "auto"]
InitialSnapshot = Literal["auto", "always", "disabled"]


@dataclass(frozen=True)
class SourceSettings:
    """Where the DynamoDB table is, how to authenticate, and how long a request may take.

    A request still failing after ``max_retries`` retries, or ``max_retry_s`` after its first
    attempt, puts the dataset in error.
    """

    table: str
    region: str | None = None
    auth: Literal["iam_role", "key"] = "iam_role"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    # With auth iam_role, where credentials may come from: boto3's whole chain (auto), only
    # the instance or container metadata service (metadata), only AWS_* variables (env).
    iam_role_source: Literal["auto", "metadata", "env"] = "auto"
    endpoint_url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    max_retries: int = 10
    max_retry_s: float = 600.0


@dataclass(frozen=True)
class AccelerationSettings:
    """The engine a dataset is mirrored into; ``file`` is set in file mode.

    ``connection`` holds libpq keywords (``host``, ``port``, ``dbname``, ``user``, ``password``,
    ``sslmode``, …) for the postgres engine; unset ones take libpq's defaults. ``reader`` holds
    the ``user`` (and ``password``) queries connect as instead, a role the engine only grants
    SELECT on the served tables; unset, the engine manages such a role itself.
    """

    engine: str  # a registered engine: sync.accelerators.engine_names()
    mode: Mode
    file: Path | None = None
    connection: Mapping[str, str] | None = field(default=None, hash=False, repr=False)
    reader: Mapping[str, str] | None = field(default=None, hash=False, repr=False)
    # The engine's own options, as its spec validated them from the params.
    options: Mapping[str, str] | None = field(default=None, hash=False)

    @property
    def location(self) -> str:
        """Datasets with the same location share one engine database (and can be joined)."""
        server_location = engine_spec(self.engine).server_location
        if server_location is not None:
            return server_location(self.connection or {})
        return f"{self.engine}:{self.file.resolve() if self.file else 'memory'}"


DEFAULT_TIME_FORMAT = "2006-01-02T15:04:05.000Z07:00"  # a Go layout: RFC 3339, milliseconds

NumberType = Literal["auto", "decimal"]
NumberOverflow = Literal["widen", "error"]
TtlDeletes = Literal["hard", "soft"]


@dataclass(frozen=True)
class TypeSettings:
    """How values become columns (README, "Types"): the number, time, unnesting and TTL
    params, and the spicepod's declared ``columns:``.

    ``time_format`` is a Go layout (``sync.dynamodb.golayout``); ``decimal_scale`` is used with
    ``number_type: decimal``; with ``number_overflow: error`` a number its column cannot hold
    stops the dataset instead of widening the column.
    """

    number_type: NumberType = "auto"
    decimal_scale: int = 9
    number_overflow: NumberOverflow = "widen"
    time_format: str = DEFAULT_TIME_FORMAT
    unnest_depth: int = 0
    columns: tuple[DeclaredColumn, ...] = ()
    ttl_deletes: TtlDeletes = "hard"


SnapshotMode = Literal["enabled", "create_only", "bootstrap_only", "disabled"]


@dataclass(frozen=True)
class SnapshotPolicy:
    """When a dataset writes acceleration snapshots, and whether it may start from one."""

    mode: SnapshotMode = "disabled"
    trigger: Literal["time_interval", "stream_batches"] = "time_interval"
    every: timedelta = timedelta(minutes=10)  # time_interval
    every_batches: int = 1000  # stream_batches

    @property
    def creates(self) -> bool:
        return self.mode in ("enabled", "create_only")

    @property
    def bootstraps(self) -> bool:
        return self.mode in ("enabled", "bootstrap_only")


@dataclass(frozen=True)
class ExportSettings:
    """Where an initial load by S3 export (ExportTableToPointInTime) writes its files, and how
    long it is waited for.

    ``region`` and ``endpoint_url`` of the S3 bucket default to the dataset's; the files are
    read with the dataset's credentials (as the snapshot store, it takes none of its own).
    DescribeExport is polled with a backoff growing up to ``poll_interval``; an export still
    running after ``timeout`` fails the load (a bootstrap must end within the stream's 24 h).
    """

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    poll_interval: timedelta = timedelta(seconds=10)
    timeout: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class ScanRateLimit:
    """``scan_rate_limit``: the most a bootstrap Scan reads per second, as ``items_per_s``
    items, or as ``capacity_fraction`` (0 to 1) of the table's provisioned read capacity,
    spent in the read capacity units the Scan pages consumed. A fraction needs a table in
    provisioned capacity mode: an on-demand table has no read capacity to take a share of,
    and its load fails with an error saying to give items per second instead.
    """

    items_per_s: float | None = None
    capacity_fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.items_per_s is None) == (self.capacity_fraction is None):
            raise ValueError("give either items_per_s or capacity_fraction")

    def __str__(self) -> str:
        if self.items_per_s is not None:
            return f"{self.items_per_s:g} items/s"
        return f"{(self.capacity_fraction or 0) * 100:g}% of the provisioned read capacity"


@dataclass(frozen=True)
class DatasetSettings:
    """Everything one dataset's sync needs."""

    name: str
    source: SourceSettings
    acceleration: AccelerationSettings
    scan_interval: timedelta = timedelta(seconds=1)
    ready_lag: timedelta = timedelta(seconds=2)
    scan_segments: int | None = None  # None: sized from the table's item count
    scan_rate_limit: ScanRateLimit | None = None  # None: no ceiling (throttles still slow it)
    schema_infer_max_records: int = 10
    # ``acceleration.primary_key`` as the pod declares it: must be the table's key (a set).
    primary_key: tuple[str, ...] | None = None
    # ``acceleration.indexes``: secondary indexes the engine keeps on the mirrored table.
    indexes: tuple[Index, ...] = ()
    # How the table is first loaded (issue 15): a parallel Scan, an S3 export (``export`` set),
    # or an export falling back to Scan; ``initial_snapshot`` is Spice's
    # dynamodb_replication_initial_snapshot (disabled: the stream only, no initial load).
    initial_load: InitialLoad = "scan"
    export: ExportSettings | None = None
    initial_snapshot: InitialSnapshot = "auto"
    retention_behavior: RetentionBehavior = "error"
    shard_retention: timedelta = timedelta(hours=24)
    topology_refresh: timedelta = timedelta(seconds=30)
    error_retry: timedelta = timedelta(seconds=30)
    snapshots: SnapshotPolicy = SnapshotPolicy()  # a dataset in error tries again this often
    types: TypeSettings = TypeSettings()
