"""``spicepod.yaml``: parsed once, validated before anything starts, into frozen settings.

Keys follow Spice's so that a Spice user's file works unchanged. Every problem is a
:class:`ConfigError` whose one-line message names the dataset and the key.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, get_args
from urllib.parse import urlsplit

import yaml

from flightsrv.durations import parse_duration
from flightsrv.secrets import SecretError, load_secrets
from flightsrv.spicekeys import (
    NOT_APPLICABLE,
    RENAMED_PARAMS,
    RESTART_MEANS,
    InapplicableKeys,
    did_you_mean,
)
from sync import settings as sync_settings
from sync.accelerators import engine_names, engine_spec
from sync.accelerators.spec import Connection, EngineSpec, ParamError
from sync.dynamodb.golayout import compile_layout
from sync.lease import DEFAULT_LEASE_TIMEOUT_S
from sync.pipeline import STAGING_SUFFIX
from sync.schema import ColumnType, DeclaredColumn, Index, parse_type
from sync.settings import (
    AccelerationSettings,
    DatasetSettings,
    NumberOverflow,
    NumberType,
    RetentionBehavior,
    ScanRateLimit,
    SnapshotPolicy,
    SourceSettings,
    TtlDeletes,
    TypeSettings,
)
from sync.snapshots import SnapshotSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

TOP_KEYS = {
    "views",
    "version",
    "kind",
    "name",
    "datasets",
    "metadata",
    "runtime",
    "secrets",
    "snapshots",
}
SNAPSHOT_KEYS = {"enabled", "location", "bootstrap_on_failure_behavior", "params"}
SNAPSHOT_PARAMS = ("s3_region", "s3_endpoint")
DATASET_KEYS = {
    "from",
    "name",
    "description",
    "params",
    "acceleration",
    "metadata",
    "metrics",
    "columns",
}
COLUMN_KEYS = {"name", "type", "description", "metadata"}
ACCELERATION_KEYS = {
    "indexes",
    "primary_key",
    "on_conflict",
    "enabled",
    "engine",
    "mode",
    "refresh_mode",
    "refresh_sql",
    "params",
    "snapshots",
    "snapshots_trigger",
    "snapshots_trigger_threshold",
}
RETENTION_BEHAVIORS = ("error", "ready_before_load", "ready_after_load")
IAM_ROLE_SOURCES = ("auto", "metadata", "env")
# Spice's DynamoDB dataset metrics, exported as ``dataset_dynamodb_<name>`` when enabled.
DATASET_METRICS = (
    "shards_active",
    "records_consumed_total",
    "lag_ms",
    "errors_transient_total",
    "reinitializations_on_lag_exceeds_shard_retention_total",
)
MIN_LEASE_TIMEOUT_S = 1.0
RUNTIME_KEYS = {"telemetry", "auth", "tls", "query", "lease_timeout"}
QUERY_KEYS = {"timeout", "max_statement_size", "parse_timeout"}
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
TELEMETRY_KEYS = {"enabled", "otel_exporter"}
API_KEY_SECTIONS = ("api-key", "api_key")  # Spice's files use both spellings
TLS_KEYS = {"enabled", "certificate_file", "key_file"}
# Spice's key permission suffixes; every key is read-only here, as the whole server is.
API_KEY_PERMISSIONS = (":ro", ":rw")
OTLP_METRICS_PATH = "/v1/metrics"


class ConfigError(Exception):
    """A problem in the spicepod; the message is one line naming where it is."""


@dataclass(frozen=True)
class OtelSettings:
    """OTLP/HTTP push of the runtime's metrics (``runtime.telemetry.otel_exporter``)."""

    endpoint: str  # the full URL metrics are POSTed to, ending in /v1/metrics by default
    push_interval: timedelta = timedelta(seconds=60)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TlsSettings:
    """``runtime.tls`` (or ``flightsrv run --tls-certificate-file/--tls-key-file``): PEM files."""

    certificate_file: Path
    key_file: Path

    def load(self, where: str = "runtime.tls") -> tuple[bytes, bytes]:
        """The certificate chain and private key, read now.

        Raises:
            ConfigError: a file cannot be read or is not PEM.
        """
        pems = []
        for key, path, marker in (
            ("certificate_file", self.certificate_file, b"-----BEGIN CERTIFICATE-----"),
            ("key_file", self.key_file, b"PRIVATE KEY-----"),
        ):
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ConfigError(f"{where}.{key}: cannot read {path}: {e.strerror}") from e
            if marker not in data:
                raise ConfigError(f"{where}.{key}: {path} is not a PEM {key.split('_')[0]}")
            pems.append(data)
        return pems[0], pems[1]


@dataclass(frozen=True)
class QueryLimits:
    """``runtime.query``: what one client statement may cost the server.

    A statement larger than ``max_statement_bytes`` is refused before it is parsed; parsing and
    checking it may take ``parse_timeout`` at most; running it, ``timeout`` (``None``: no limit),
    after which it is interrupted in the engine.
    """

    timeout: timedelta | None = timedelta(minutes=5)
    max_statement_bytes: int = 256 * 1024
    parse_timeout: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class View:
    """One entry of the top-level ``views:``: a name and the SQL it serves (see
    :mod:`flightsrv.views`)."""

    name: str
    sql: str


@dataclass(frozen=True)
class RuntimeConfig:
    name: str
    datasets: tuple[DatasetSettings, ...]
    path: Path
    # dataset name -> the DATASET_METRICS enabled by its ``metrics:`` list (absent: none)
    metrics: dict[str, frozenset[str]] = field(default_factory=dict)
    otel: OtelSettings | None = None
    api_keys: tuple[str, ...] = ()  # runtime.auth.api-key.keys when enabled; empty: no auth
    tls: TlsSettings | None = None
    snapshots: SnapshotSettings | None = None  # the top-level snapshots block, when enabled
    query: QueryLimits = QueryLimits()
    views: tuple[View, ...] = ()
    # runtime.lease_timeout: with several runtimes on one PostgreSQL database, how soon after
    # the runtime syncing a dataset dies another one syncs it (see sync.lease)
    lease_timeout: timedelta = timedelta(seconds=DEFAULT_LEASE_TIMEOUT_S)


def load_config(path: Path) -> RuntimeConfig:
    """Read and validate ``path``; relative file paths resolve against its folder."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    return parse_config(document, path)


def parse_config(document: Any, path: Path) -> RuntimeConfig:
    where = str(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping with version, kind and datasets")
    inapplicable = InapplicableKeys()
    document = inapplicable.drop(document, "top", where)
    _reject_unknown(document, TOP_KEYS, where, "top")
    if document.get("kind", "Spicepod") != "Spicepod":
        raise ConfigError(f"{where}: kind: expected 'Spicepod', got {document.get('kind')!r}")
    if str(document.get("version", "v1")) not in ("v1", "v1beta1"):
        raise ConfigError(f"{where}: version: expected 'v1', got {document.get('version')!r}")
    try:
        secrets = load_secrets(document.get("secrets"), path.parent)
        document = secrets.resolve_tree({k: v for k, v in document.items() if k != "secrets"}, "")
    except SecretError as e:
        raise ConfigError(f"{where}: {e}") from e
    raw_datasets = document.get("datasets") or []
    if not isinstance(raw_datasets, list):
        raise ConfigError(f"{where}: datasets: expected a list")
    datasets: list[DatasetSettings] = []
    metrics: dict[str, frozenset[str]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(raw_datasets):
        dataset = _dataset(raw, f"{where}: datasets[{index}]", path.parent, inapplicable)
        if dataset.name.lower() in seen:
            raise ConfigError(
                f"{where}: dataset {dataset.name!r}: name: duplicate dataset name "
                "(names must be unique, case-insensitively)"
            )
        seen.add(dataset.name.lower())
        datasets.append(dataset)
        enabled = _dataset_metrics(raw.get("metrics"), f"{where}: dataset {dataset.name!r}")
        if enabled:
            metrics[dataset.name] = enabled
    runtime = _mapping(document.get("runtime"), f"{where}: runtime")
    runtime = inapplicable.drop(runtime, "runtime", f"{where}: runtime")
    _reject_unknown(runtime, RUNTIME_KEYS, f"{where}: runtime", "runtime")
    snapshots = _snapshots(document.get("snapshots"), f"{where}: snapshots", path.parent)
    for dataset in datasets:
        _check_snapshot_policy(dataset, snapshots, f"{where}: dataset {dataset.name!r}")
    query = _query_limits(runtime.get("query"), f"{where}: runtime.query")
    lease_timeout = _Getter(runtime, f"{where}: runtime").positive_seconds(
        "lease_timeout", DEFAULT_LEASE_TIMEOUT_S
    )
    if lease_timeout < MIN_LEASE_TIMEOUT_S:
        raise ConfigError(
            f"{where}: runtime.lease_timeout: at least {MIN_LEASE_TIMEOUT_S:g}s (it is renewed "
            f"every fifth of it, over the network), got {lease_timeout:g}s"
        )
    return RuntimeConfig(
        str(document.get("name") or "spicepod"),
        tuple(datasets),
        path,
        metrics,
        _otel(runtime.get("telemetry"), f"{where}: runtime.telemetry"),
        _api_keys(runtime.get("auth"), f"{where}: runtime.auth"),
        _tls(runtime.get("tls"), f"{where}: runtime.tls", path.parent),
        snapshots,
        query,
        _views(document.get("views"), where, [d.name for d in datasets], query),
        timedelta(seconds=lease_timeout),
    )


def _views(raw: Any, where: str, datasets: list[str], limits: QueryLimits) -> tuple[View, ...]:
    """Top-level ``views:``: ``- name: …`` / ``sql: …``, each checked as a query is."""
    from flightsrv.views import ViewError, check_views  # it needs this module's QueryLimits

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: views: expected a list of name and sql")
    views = []
    for index, entry in enumerate(raw):
        place = f"{where}: views[{index}]"
        entry = _mapping(entry, place)
        _reject_unknown(entry, {"name", "sql", "description", "metadata"}, place)
        name, sql_text = _served_name(entry.get("name"), place), entry.get("sql")
        if not isinstance(sql_text, str) or not sql_text.strip():
            raise ConfigError(f"{where}: views: {name}: sql: expected a SELECT statement")
        views.append(View(name, sql_text))
    try:
        check_views(views, datasets, limits)
    except ViewError as e:
        raise ConfigError(f"{where}: {e}") from e
    return tuple(views)


def _query_limits(raw: Any, where: str) -> QueryLimits:
    """``runtime.query``: ``timeout`` (a duration, ``0s`` for none), ``max_statement_size``
    (bytes, or with a unit: ``256KiB``, ``1MB``) and ``parse_timeout``."""
    section = _mapping(raw, where)
    _reject_unknown(section, QUERY_KEYS, where)
    get = _Getter(section, where)
    defaults = QueryLimits()
    timeout = get.duration("timeout", defaults.timeout or timedelta(0))
    parse_timeout = get.duration("parse_timeout", defaults.parse_timeout)
    if parse_timeout <= timedelta(0):
        raise ConfigError(f"{where}.parse_timeout: must be longer than 0")
    size = get.size("max_statement_size", defaults.max_statement_bytes)
    return QueryLimits(timeout if timeout > timedelta(0) else None, size, parse_timeout)


def _snapshots(raw: Any, where: str, base: Path) -> SnapshotSettings | None:
    """The top-level ``snapshots`` block (Spice's keys); None when absent or disabled."""
    block = _mapping(raw, where)
    _reject_unknown(block, SNAPSHOT_KEYS, where)
    get = _Getter(block, where)
    if not get.boolean("enabled", bool(block)):
        return None
    location = get.string("location")
    if not location:
        raise ConfigError(f"{where}.location: required (a directory or s3://bucket/prefix)")
    if not location.startswith("s3://"):
        path = Path(location)
        location = str(path if path.is_absolute() else base / path)
    on_failure = get.choice("bootstrap_on_failure_behavior", ("warn", "retry", "fallback"), "warn")
    params = _mapping(block.get("params"), f"{where}.params")
    pget = _Getter(params, f"{where}.params")
    region, endpoint = (pget.string(k) for k in SNAPSHOT_PARAMS)
    pget.reject_rest()
    return SnapshotSettings(location, on_failure, region, endpoint)  # type: ignore[arg-type]


def _snapshot_policy(acc: dict[str, Any], where: str) -> SnapshotPolicy:
    get = _Getter(acc, where)
    mode = get.choice(
        "snapshots", ("enabled", "create_only", "bootstrap_only", "disabled"), "disabled"
    )
    trigger = get.choice("snapshots_trigger", ("time_interval", "stream_batches"), "time_interval")
    threshold = acc.get("snapshots_trigger_threshold")
    if threshold is None:
        return SnapshotPolicy(mode, trigger)  # type: ignore[arg-type]
    if trigger == "stream_batches":
        batches = get.positive_int("snapshots_trigger_threshold", 1000)
        return SnapshotPolicy(mode, trigger, every_batches=batches)  # type: ignore[arg-type]
    every = get.duration("snapshots_trigger_threshold", timedelta(minutes=10))
    return SnapshotPolicy(mode, trigger, every=every)  # type: ignore[arg-type]


def _check_snapshot_policy(
    dataset: DatasetSettings, snapshots: SnapshotSettings | None, where: str
) -> None:
    if dataset.snapshots.mode == "disabled":
        return
    if snapshots is None:
        raise ConfigError(
            f"{where}: acceleration.snapshots: needs the top-level snapshots block "
            "(enabled: true, location: <dir or s3://bucket/prefix>)"
        )
    if dataset.acceleration.file is None:
        raise ConfigError(
            f"{where}: acceleration.snapshots: snapshots copy a file accelerator "
            "(engine duckdb or sqlite with mode: file)"
        )


EXPORT_PARAMS = (
    "dynamodb_export_s3_bucket",
    "dynamodb_export_s3_prefix",
    "dynamodb_export_s3_region",
    "dynamodb_export_s3_endpoint",
    "dynamodb_export_poll_interval",
    "dynamodb_export_timeout",
)


def _initial_load(get: _Getter, where: str) -> dict[str, Any]:
    """How the table is first loaded: ``dynamodb_initial_load`` (scan, export, auto), the
    ``dynamodb_export_*`` params of an export, and Spice's
    ``dynamodb_replication_initial_snapshot``."""
    initial_load = get.choice("dynamodb_initial_load", ("scan", "export", "auto"), "scan")
    snapshot = get.choice(
        "dynamodb_replication_initial_snapshot", ("auto", "always", "disabled"), "auto"
    )
    bucket, prefix, region, endpoint = (get.string(k) for k in EXPORT_PARAMS[:4])
    settings = sync_settings.ExportSettings
    poll = get.duration(EXPORT_PARAMS[4], settings.poll_interval)  # the class holds defaults
    timeout = get.duration(EXPORT_PARAMS[5], settings.timeout)
    if initial_load == "scan":
        given = [k for k in EXPORT_PARAMS if get._mapping.get(k) is not None]
        if given:
            raise ConfigError(
                f"{where}.{given[0]}: only used with dynamodb_initial_load: export or auto"
            )
        return {"initial_load": initial_load, "initial_snapshot": snapshot}
    if snapshot == "disabled":
        raise ConfigError(
            f"{where}.dynamodb_initial_load: {initial_load!r} loads nothing when "
            "dynamodb_replication_initial_snapshot is 'disabled' (leave it at scan)"
        )
    if not bucket:
        raise ConfigError(
            f"{where}.dynamodb_export_s3_bucket: required when dynamodb_initial_load is "
            f"{initial_load!r} (the S3 bucket the table is exported to)"
        )
    if bucket.startswith("s3://") or "/" in bucket:
        raise ConfigError(
            f"{where}.dynamodb_export_s3_bucket: expected a bucket name alone, got {bucket!r} "
            "(the folder goes in dynamodb_export_s3_prefix)"
        )
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(
            f"{where}.dynamodb_export_s3_endpoint: expected an http(s):// URL, got {endpoint!r}"
        )
    for key, value in ((EXPORT_PARAMS[4], poll), (EXPORT_PARAMS[5], timeout)):
        if value <= timedelta(0):
            raise ConfigError(f"{where}.{key}: must be longer than 0")
    export = settings(bucket, (prefix or "").strip("/"), region, endpoint, poll, timeout)
    return {"initial_load": initial_load, "export": export, "initial_snapshot": snapshot}


def _dataset_metrics(raw: Any, where: str) -> frozenset[str]:
    """Spice's ``metrics:`` list of a dataset: ``- name: <metric>`` (``enabled: false`` skips)."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: metrics: expected a list of {{name: <metric>}} entries")
    enabled: set[str] = set()
    for index, entry in enumerate(raw):
        entry_where = f"{where}: metrics[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{entry_where}: expected a mapping such as {{name: lag_ms}}")
        get = _Getter(entry, entry_where)
        name = get.string("name")
        if name is None:
            raise ConfigError(f"{entry_where}.name: required (one of {', '.join(DATASET_METRICS)})")
        if name not in DATASET_METRICS:
            raise ConfigError(
                f"{entry_where}.name: unknown metric {name!r} "
                f"(expected one of {', '.join(DATASET_METRICS)})"
            )
        if get.boolean("enabled", True):
            enabled.add(name)
        get.reject_rest()
    return frozenset(enabled)


def _otel(raw: Any, where: str) -> OtelSettings | None:
    """``runtime.telemetry.otel_exporter`` (``where`` names ``runtime.telemetry``)."""
    telemetry = _mapping(raw, where)
    _reject_unknown(telemetry, TELEMETRY_KEYS, where)
    # ``enabled`` is Spice's switch for its anonymous usage telemetry; this runtime sends none,
    # so the key is only checked, for files written for Spice.
    _Getter(telemetry, where).boolean("enabled", True)
    if telemetry.get("otel_exporter") is None:
        return None
    where = f"{where}.otel_exporter"
    exporter = _mapping(telemetry["otel_exporter"], where)
    get = _Getter(exporter, where)
    endpoint = get.string("endpoint")
    url = urlsplit(endpoint or "")
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            f"{where}.endpoint: expected the http(s) URL of an OTLP/HTTP receiver such as "
            f"http://127.0.0.1:4318{OTLP_METRICS_PATH}, got {endpoint!r}"
        )
    if url.path in ("", "/"):  # a collector's base URL: metrics go to its standard path
        endpoint = url._replace(path=OTLP_METRICS_PATH).geturl()
    push_interval = get.duration("push_interval", timedelta(seconds=60))
    if push_interval <= timedelta(0):
        raise ConfigError(f"{where}.push_interval: must be longer than 0")
    headers = get.mapping("headers")
    for key, value in headers.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}.headers.{key}: expected a string, got {value!r}")
    get.reject_rest()
    return OtelSettings(
        endpoint=str(endpoint),
        push_interval=push_interval,
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
    )


def _api_keys(raw: Any, where: str) -> tuple[str, ...]:
    """``runtime.auth.api-key`` (or ``api_key``): ``{enabled: true, keys: [...]}``.

    Keys may read secrets (``${env:NAME}``); Spice's ``:ro`` / ``:rw`` suffixes are accepted
    and dropped.
    Returns no keys when authentication is disabled.
    """
    auth = _mapping(raw, where)
    _reject_unknown(auth, set(API_KEY_SECTIONS), where)
    present = [name for name in API_KEY_SECTIONS if name in auth]
    if not present:
        return ()
    if len(present) > 1:
        raise ConfigError(f"{where}: api_key: give either api-key or api_key, not both")
    where = f"{where}.{present[0]}"
    section = _mapping(auth[present[0]], where)
    get = _Getter(section, where)
    enabled = get.boolean("enabled", True)
    raw_keys = section.get("keys")
    get._read.add("keys")
    get.reject_rest()
    if not enabled:
        return ()
    if not isinstance(raw_keys, list) or not raw_keys:
        raise ConfigError(f"{where}.keys: expected a non-empty list of API keys")
    keys = []
    for index, value in enumerate(raw_keys):
        key_where = f"{where}.keys[{index}]"
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(f"{key_where}: expected a string, got {value!r}")
        key = str(value).strip()
        for suffix in API_KEY_PERMISSIONS:
            key = key.removesuffix(suffix)
        if not key:
            raise ConfigError(f"{key_where}: empty API key")
        if any(ch.isspace() for ch in key):
            raise ConfigError(f"{key_where}: an API key cannot contain spaces")
        keys.append(key)
    return tuple(keys)


def _tls(raw: Any, where: str, base: Path) -> TlsSettings | None:
    """``runtime.tls``: ``{enabled: true, certificate_file: F, key_file: F}`` (PEM files)."""
    tls = _mapping(raw, where)
    _reject_unknown(tls, TLS_KEYS, where)
    get = _Getter(tls, where)
    enabled = get.boolean("enabled", True)
    files = {key: get.string(key) for key in ("certificate_file", "key_file")}
    if not tls or not enabled:
        return None
    for key, value in files.items():
        if not value:
            raise ConfigError(f"{where}.{key}: required when TLS is enabled (a PEM file path)")
    paths = {k: Path(str(v)) for k, v in files.items()}
    settings = TlsSettings(*(p if p.is_absolute() else base / p for p in paths.values()))
    settings.load(where)  # unreadable or non-PEM files fail now, before anything starts
    return settings


DEFAULT_SCHEMA = "public"  # the Flight SQL schema of names without one
_NOT_IN_NAMES = re.compile(r'[\x00-\x1f\x7f"/\\]')


def _served_name(name: Any, where: str) -> str:
    """A dataset or view name as Spice allows it: ``orders``; a name SQL must quote
    (``Order Items``, ``order-items``); or ``sales.orders``, table ``orders`` of schema
    ``sales``. The name is also the engine table's and, by default, its file's name."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name: expected a table name, got {name!r}")
    bad = _NOT_IN_NAMES.search(name)
    if bad:
        raise ConfigError(
            f"{where}: name: {name!r} holds {bad.group()!r}: names may not hold quotes, "
            "slashes or control characters"
        )
    parts = name.split(".")
    if len(parts) > 2 or any(p != p.strip() or not p for p in parts):
        raise ConfigError(
            f"{where}: name: {name!r} is not a table name: write 'table' or 'schema.table' "
            "(one dot, no surrounding spaces)"
        )
    if len(parts) == 2 and parts[0].lower() == DEFAULT_SCHEMA:
        raise ConfigError(
            f"{where}: name: {name!r}: {DEFAULT_SCHEMA} is the default schema; write {parts[1]!r}"
        )
    return name


def _dataset(raw: Any, where: str, base: Path, inapplicable: InapplicableKeys) -> DatasetSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with from, name and acceleration")
    name = _served_name(raw.get("name"), where)
    where = f"{where.split(':')[0]}: dataset {name!r}"
    raw = inapplicable.drop(raw, "dataset", where)
    _reject_unknown(raw, DATASET_KEYS, where, "dataset")
    source = raw.get("from")
    if not isinstance(source, str) or not source.startswith("dynamodb:") or source == "dynamodb:":
        raise ConfigError(
            f"{where}: from: expected 'dynamodb:<table name>', got {source!r} "
            "(only the dynamodb connector is supported)"
        )
    params = _mapping(raw.get("params"), f"{where}: params")
    get = _Getter(params, f"{where}: params", RENAMED_PARAMS)
    auth = get.choice("dynamodb_aws_auth", ("iam_role", "key"), "iam_role")
    role_source = get.choice("dynamodb_aws_iam_role_source", IAM_ROLE_SOURCES, "auto")
    access_key = get.string("dynamodb_aws_access_key_id")
    secret_key = get.string("dynamodb_aws_secret_access_key")
    if auth == "key" and not (access_key and secret_key):
        raise ConfigError(
            f"{where}: params.dynamodb_aws_access_key_id: required (with "
            "dynamodb_aws_secret_access_key) when dynamodb_aws_auth is 'key'"
        )
    settings = DatasetSettings(
        name=name,
        source=SourceSettings(
            table=source.removeprefix("dynamodb:"),
            region=get.string("dynamodb_aws_region"),
            auth=auth,  # type: ignore[arg-type]
            access_key_id=access_key,
            secret_access_key=secret_key,
            session_token=get.string("dynamodb_aws_session_token"),
            iam_role_source=role_source,  # type: ignore[arg-type]
            endpoint_url=get.string("endpoint_url"),
            connect_timeout_s=get.positive_seconds("dynamodb_connect_timeout", 5.0),
            read_timeout_s=get.positive_seconds("dynamodb_read_timeout", 20.0),
            max_retries=get.positive_int("dynamodb_max_retries", 10),
            max_retry_s=get.positive_seconds("dynamodb_max_retry_duration", 600.0),
        ),
        acceleration=_acceleration(raw.get("acceleration"), name, where, base, inapplicable),
        primary_key=_primary_key(_mapping(raw.get("acceleration"), where), where),
        indexes=_indexes(_mapping(raw.get("acceleration"), where), where),
        snapshots=_snapshot_policy(
            _mapping(raw.get("acceleration"), where), f"{where}: acceleration"
        ),
        scan_interval=get.duration("scan_interval", timedelta(seconds=1)),
        ready_lag=get.duration("dynamodb_replication_ready_lag", timedelta(seconds=2)),
        scan_segments=get.segments("scan_segments"),
        scan_rate_limit=get.rate_limit("scan_rate_limit"),
        **_initial_load(get, f"{where}: params"),
        schema_infer_max_records=get.positive_int("schema_infer_max_records", 10),
        retention_behavior=_retention_behavior(get),
        shard_retention=get.duration("shard_retention", timedelta(hours=24)),
        topology_refresh=get.duration("shard_discovery_interval", timedelta(seconds=30)),
        error_retry=get.duration("error_retry_interval", timedelta(seconds=30)),
        types=_type_settings(get, raw.get("columns"), where),
    )
    get.reject_rest()
    return settings


def _key_columns(value: Any) -> tuple[str, ...] | None:
    """``id``, ``(a, b)``, ``a, b`` or a list of names; None if it is none of those."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    elif isinstance(value, str):
        names = [n.strip() for n in value.strip().removeprefix("(").removesuffix(")").split(",")]
    else:
        return None
    return tuple(names) if all(names) else None


def _primary_key(acc: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
    """``acceleration.primary_key`` (checked against the table's key when the sync starts)
    and ``on_conflict`` (``upsert`` on that key: what a change mirror does)."""
    where = f"{where}: acceleration"
    raw = acc.get("primary_key")
    key = None if raw is None else _key_columns(raw)
    if raw is not None and key is None:
        raise ConfigError(
            f"{where}.primary_key: expected a column or a list of them, as id or (pk, sk), "
            f"got {raw!r}"
        )
    conflicts = acc.get("on_conflict")
    if conflicts is None:
        return key
    if not isinstance(conflicts, dict) or not conflicts:
        raise ConfigError(
            f"{where}.on_conflict: expected a mapping of key columns to upsert, as "
            f"{{{', '.join(key or ('pk',))}: upsert}}, got {conflicts!r}"
        )
    for columns, action in conflicts.items():
        named = _key_columns(columns)
        if action != "upsert":
            raise ConfigError(
                f"{where}.on_conflict.{columns}: {action!r} is not available: a change mirror "
                "applies each change of a key as the table made it, which is upsert (drop "
                "would keep rows the table has since changed); write upsert or remove "
                "on_conflict"
            )
        if named is None or (key is not None and set(named) != set(key)):
            raise ConfigError(
                f"{where}.on_conflict.{columns}: expected the primary key "
                f"({', '.join(key or ('the table key',))})"
            )
    return key


def _indexes(acc: Mapping[str, Any], where: str) -> tuple[Index, ...]:
    """``acceleration.indexes``: ``{column: enabled | unique, "(a, b)": enabled}``."""
    where = f"{where}: acceleration.indexes"
    declared = _mapping(acc.get("indexes"), where)
    indexes = []
    for columns, kind in declared.items():
        named = _key_columns(columns)
        if named is None:
            raise ConfigError(f"{where}: {columns!r}: expected a column or (a, b), as Spice writes")
        if kind not in ("enabled", "unique"):
            raise ConfigError(f"{where}.{columns}: expected enabled or unique, got {kind!r}")
        indexes.append(Index(named, unique=kind == "unique"))
    return tuple(indexes)


def _retention_behavior(get: _Getter) -> RetentionBehavior:
    """``dynamodb_replication_invalid_checkpoint_behavior`` (or its older name): Spice's
    ``restart`` is ``ready_before_load``."""
    value = get.choice(
        "dynamodb_replication_invalid_checkpoint_behavior",
        ("error", "restart", *RETENTION_BEHAVIORS[1:]),
        "error",
    )
    return RESTART_MEANS if value == "restart" else value  # type: ignore[return-value]


def _type_settings(get: _Getter, columns: Any, where: str) -> TypeSettings:
    """How values become columns: the number, time, unnesting and TTL params, and the
    declared ``columns:`` (README, "Types"). Choices and defaults are ``TypeSettings``'s."""
    default = TypeSettings()
    number_type = get.choice("number_type", get_args(NumberType), default.number_type)
    scale = get._typed(
        "decimal_scale", default.decimal_scale, _scale, f"an integer from 0 to {MAX_DECIMAL_SCALE}"
    )
    if scale != default.decimal_scale and number_type != "decimal":
        raise ConfigError(f"{where}: params.decimal_scale: only used with number_type: decimal")
    raw_format = get._get("time_format")
    if isinstance(raw_format, datetime):  # YAML read an unquoted value as a timestamp
        raise ConfigError(
            f"{where}: params.time_format: quote the layout (YAML read {raw_format} as a "
            "timestamp), e.g. time_format: '2006-01-02 15:04:05.000'"
        )
    time_format = default.time_format if raw_format is None else str(raw_format)
    try:
        compile_layout(time_format)
    except ValueError as e:
        raise ConfigError(f"{where}: params.time_format: {e}") from e
    overflow = get.choice("number_overflow", get_args(NumberOverflow), default.number_overflow)
    return TypeSettings(
        number_type=number_type,  # type: ignore[arg-type]
        decimal_scale=scale,
        number_overflow=overflow,  # type: ignore[arg-type]
        time_format=time_format,
        unnest_depth=get._typed("unnest_depth", default.unnest_depth, _depth, "an integer >= 0"),
        ttl_deletes=get.choice(  # type: ignore[arg-type]
            "ttl_deletes", get_args(TtlDeletes), default.ttl_deletes
        ),
        columns=_columns(columns, f"{where}: columns"),
    )


MAX_DECIMAL_SCALE = 37  # DECIMAL(38, s) keeps at least one digit before the point


def _scale(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or not 0 <= int(value) <= MAX_DECIMAL_SCALE:
        raise ValueError
    return int(value)


def _depth(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ValueError
    return int(value)


def _columns(raw: Any, where: str) -> tuple[DeclaredColumn, ...]:
    """Spice's dataset ``columns:``: ``name``, optional ``type`` (an SQL type name),
    ``description``, and ``metadata: {json_object: "*"}`` on at most one column."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {{name: <column>}} entries")
    declared: list[DeclaredColumn] = []
    for index, entry in enumerate(raw):
        entry_where = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{entry_where}: expected a mapping such as {{name: city}}")
        _reject_unknown(entry, COLUMN_KEYS, entry_where)
        get = _Getter(entry, entry_where)
        name = get.string("name")
        if not name:
            raise ConfigError(f"{entry_where}.name: required")
        if any(c.name == name for c in declared):
            raise ConfigError(f"{entry_where}.name: column {name!r} is declared twice")
        type_text = get.string("type")
        try:
            type_ = parse_type(type_text) if type_text else None
        except ValueError as e:
            raise ConfigError(f"{entry_where}.type: {e}") from e
        metadata = get.mapping("metadata")
        unknown = sorted(set(metadata) - {"json_object"})
        if unknown:
            raise ConfigError(
                f"{entry_where}.metadata.{unknown[0]}: unknown key (only json_object is read)"
            )
        json_object = "json_object" in metadata
        if json_object and metadata["json_object"] != "*":
            raise ConfigError(
                f'{entry_where}.metadata.json_object: only "*" (every undeclared attribute) '
                f"is supported, got {metadata['json_object']!r}"
            )
        if json_object and type_ not in (None, ColumnType.JSON):
            raise ConfigError(f"{entry_where}.type: a json_object column is JSON, got {type_}")
        if json_object and any(c.json_object for c in declared):
            raise ConfigError(
                f"{entry_where}.metadata.json_object: only one column can collect the "
                "undeclared attributes"
            )
        declared.append(
            DeclaredColumn(name, type_, get.string("description"), json_object=json_object)
        )
        get.reject_rest()
    return tuple(declared)


def _acceleration(
    raw: Any, name: str, where: str, base: Path, inapplicable: InapplicableKeys
) -> AccelerationSettings:
    where = f"{where}: acceleration"
    if raw is None:
        raise ConfigError(
            f"{where}: required for dynamodb datasets (enabled: true, refresh_mode: changes)"
        )
    acc = inapplicable.drop(_mapping(raw, where), "acceleration", where)
    _reject_unknown(acc, ACCELERATION_KEYS, where, "acceleration")
    get = _Getter(acc, where)
    if get.boolean("enabled", True) is not True:
        raise ConfigError(
            f"{where}.enabled: must be true: dynamodb datasets are served from their accelerator"
        )
    if "refresh_sql" in acc:
        raise ConfigError(
            f"{where}.refresh_sql: not supported with DynamoDB Streams "
            "(refresh_mode: changes applies every change; remove refresh_sql)"
        )
    refresh_mode = get.string("refresh_mode")
    if refresh_mode != "changes":
        raise ConfigError(
            f"{where}.refresh_mode: must be 'changes' for dynamodb datasets, got {refresh_mode!r}"
        )
    engine = get.choice("engine", (*engine_names(), "arrow"), "duckdb")
    if engine == "arrow":
        # Spice's default engine keeps Arrow batches in memory; DuckDB in memory does that
        # here, with the same SQL as engine: duckdb.
        if get.choice("mode", ("memory",), "memory") != "memory":
            raise ConfigError(f"{where}.mode: engine arrow is in memory only")
        log.info("%s: engine arrow is served from DuckDB in memory", where)
        engine = "duckdb"
    spec = engine_spec(engine)
    params = _mapping(acc.get("params"), f"{where}.params")
    pget = _Getter(params, f"{where}.params")
    mode = get.choice("mode", ("memory", "file"), spec.modes[0])
    if mode not in spec.modes:
        raise ConfigError(
            f"{where}.mode: {spec.name} {spec.modes_note}; use mode: {spec.modes[0]} or omit it"
        )
    limit = spec.max_identifier_bytes
    if limit is not None and len(name.encode()) > limit - len(STAGING_SUFFIX):
        raise ConfigError(
            f"{where.rsplit(':', 1)[0]}: name: at most {limit - len(STAGING_SUFFIX)} bytes with "
            f"engine {spec.name} ({spec.title} identifiers are {limit} bytes, with room for a "
            "staging suffix)"
        )
    file_value = pget.string(spec.file_param) if spec.file_param else None
    values = {key: value for key in spec.params if (value := pget.string(key)) is not None}
    for key in spec.inapplicable_params:
        if pget.string(key) is not None:
            log.warning("%s.params.%s: not applicable to %s; ignored", where, key, spec.name)
    pget.reject_rest()
    file = None
    if mode == "file" and spec.file_param:
        file = Path(file_value) if file_value else Path("data") / f"{name}.{spec.name}"
        file = file if file.is_absolute() else base / file
    elif file_value:
        raise ConfigError(f"{where}.params.{spec.file_param}: only used with mode: file")
    if spec.options is not None:
        try:
            options = spec.options(values)
        except ParamError as e:
            raise ConfigError(f"{where}.params.{e.param}: {e}") from e
        return AccelerationSettings(spec.name, mode, file, options=options)
    if spec.connection is None:
        return AccelerationSettings(spec.name, mode, file)
    connection = _connection(spec.connection, spec, values, where)
    return AccelerationSettings(spec.name, mode, file, connection.keywords, connection.reader)


def _connection(
    connect: Callable[[Mapping[str, str]], Connection],
    spec: EngineSpec,
    values: Mapping[str, str],
    where: str,
) -> Connection:
    """A server engine's connection settings from its params, problems as config errors."""
    try:
        return connect(values)
    except ImportError as e:
        raise ConfigError(
            f"{where}.engine: {spec.name} needs its driver: pip install 'dynamirror[{spec.extra}]'"
        ) from e
    except ParamError as e:
        raise ConfigError(f"{where}.params.{e.param}: {e}") from e


def _reject_unknown(
    mapping: Mapping[str, Any], known: set[str], where: str, section: str | None = None
) -> None:
    """A key neither this runtime nor Spice has (in ``section``) is an error."""
    for key in mapping:
        if key not in known:
            names = known | set(NOT_APPLICABLE.get(section or "", ()))
            raise ConfigError(
                f"{where}: {key}: unknown key{did_you_mean(str(key), names)} "
                f"(expected one of {sorted(known)})"
            )


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    return raw


def _same(value: Any) -> str:
    """A param's value as compared between its two names (``restart`` is
    ``ready_before_load``)."""
    text = str(value).strip()
    return RESTART_MEANS if text == "restart" else text


class _Getter:
    """Typed reads from one mapping; every key read is ticked off so leftovers are errors."""

    KNOWN_PARAMS_HINT = "see the spicepod reference in README.md"

    def __init__(
        self, mapping: dict[str, Any], where: str, aliases: Mapping[str, str] | None = None
    ) -> None:
        self._mapping = mapping
        self._where = where
        self._read: set[str] = set()
        self._aliases = aliases or {}  # a key → its older name, read in its place
        self._spelled: dict[str, str] = {}  # a key → the name the file gave it

    def _get(self, key: str) -> Any:
        self._read.add(key)
        value = self._mapping.get(key)
        old = self._aliases.get(key)
        if old is None:
            return value
        self._read.add(old)
        former = self._mapping.get(old)
        if value is not None and former is not None and _same(value) != _same(former):
            raise ConfigError(
                f"{self._where}: {key}: {value!r} and {old}: {former!r} are one setting under "
                f"its current and its older name, with different values; keep one of them"
            )
        if value is None and former is not None:
            self._spelled[key] = old
            return former
        return value

    def _name(self, key: str) -> str:
        """``key`` as the file spells it (its older name, when that is the one given)."""
        return self._spelled.get(key, key)

    def _typed(self, key: str, default: T, convert: Callable[[Any], T], expected: str) -> T:
        value = self._get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except (ValueError, TypeError) as e:
            detail = str(e) if isinstance(e, ValueError) and "duration" in str(e) else ""
            raise ConfigError(
                f"{self._where}.{self._name(key)}: "
                f"{detail or f'expected {expected}, got {value!r}'}"
            ) from e

    def string(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, bool | dict | list):
            raise ConfigError(f"{self._where}.{self._name(key)}: expected a string, got {value!r}")
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        def convert(value: Any) -> bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise TypeError

        return self._typed(key, default, convert, "true or false")

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key)
        if value is None:
            return default
        if value not in choices:
            raise ConfigError(
                f"{self._where}.{self._name(key)}: expected one of {', '.join(choices)}, "
                f"got {value!r}"
            )
        return value

    def duration(self, key: str, default: timedelta) -> timedelta:
        def convert(value: Any) -> timedelta:
            if isinstance(value, bool) or not isinstance(value, str):
                raise TypeError
            return parse_duration(value)

        return self._typed(key, default, convert, "a duration such as 100ms, 2s or 1m")

    def positive_seconds(self, key: str, default: float) -> float:
        """A duration above zero, in seconds (a timeout or a time bound)."""
        seconds = self.duration(key, timedelta(seconds=default)).total_seconds()
        if seconds <= 0:
            raise ConfigError(f"{self._where}.{key}: expected a duration above 0s")
        return seconds

    def positive_int(self, key: str, default: int) -> int:
        def convert(value: Any) -> int:
            if isinstance(value, bool):
                raise TypeError
            number = int(value)
            if number <= 0 or (isinstance(value, float) and value != number):
                raise ValueError
            return number

        return self._typed(key, default, convert, "an integer > 0")

    def size(self, key: str, default: int) -> int:
        """A byte size: a whole number of bytes, or with a unit (``KB``, ``KiB``, ``MB``…)."""

        def convert(value: Any) -> int:
            if isinstance(value, bool):
                raise TypeError
            match = _SIZE.fullmatch(str(value).strip())
            if match is None:
                raise TypeError
            number = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
            if number <= 0:
                raise TypeError
            return number

        return self._typed(key, default, convert, "a size such as 262144, 256KiB or 1MB")

    def mapping(self, key: str) -> dict[str, Any]:
        return _mapping(self._get(key), f"{self._where}.{key}")

    def segments(self, key: str) -> int | None:
        value = self._get(key)
        if value is None or value == "auto":
            return None
        self._read.discard(key)
        return self.positive_int(key, 1)

    def rate_limit(self, key: str) -> ScanRateLimit | None:
        """Items per second (``2000``), or a percentage of the table's provisioned read
        capacity (``50%``, above 0 and at most 100)."""
        value = self._get(key)
        if value is None:
            return None
        expected = (
            "items per second above 0 (e.g. 2000) or a percentage of the table's provisioned "
            f"read capacity from 0 to 100 (e.g. 50%), got {value!r}"
        )
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{self._where}.{key}: expected {expected}")
        text = str(value).strip()
        percent = text.endswith("%")
        try:
            number = float(text.removesuffix("%").strip())
        except ValueError:
            raise ConfigError(f"{self._where}.{key}: expected {expected}") from None
        if not math.isfinite(number) or number <= 0 or (percent and number > 100):
            raise ConfigError(f"{self._where}.{key}: expected {expected}")
        if percent:
            return ScanRateLimit(capacity_fraction=number / 100)
        return ScanRateLimit(items_per_s=number)

    def reject_rest(self) -> None:
        for key in self._mapping:
            if key not in self._read:
                raise ConfigError(
                    f"{self._where}.{key}: unknown key{did_you_mean(str(key), self._read)} "
                    f"({self.KNOWN_PARAMS_HINT}; known: {', '.join(sorted(self._read))})"
                )
