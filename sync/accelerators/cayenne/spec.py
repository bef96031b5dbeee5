"""Cayenne's declaration: Spice's ``engine: cayenne`` params, which apply here, which are
refused (and why), and which are accepted but mean nothing here."""

from __future__ import annotations

from collections.abc import Mapping

from sync.accelerators.spec import EngineSpec, ParamError
from sync.schema import TypeSupport

# Applied params and their defaults (strings, as the spicepod gives them).
DEFAULTS = {
    "cayenne_metadata_dir": "",  # empty: the data directory (cayenne_file_path)
    "cayenne_target_file_size_mb": "128",
    "cayenne_compression_strategy": "btrblocks",
    "cayenne_deletion_mode": "key",
    "cayenne_compaction_trigger_files": "8",
    "cayenne_compaction_background_interval_ms": "5000",
    "cayenne_metastore": "sqlite",
    # Memory for tables kept resolved (their current rows, decoded) for queries; 0: none.
    "cayenne_segment_cache_mb": "256",
}
# Spice's other Cayenne params: tuning of its Rust reader and its S3 storage. The Python
# reader here has its own caches, and data files stay on local disk.
INAPPLICABLE = (
    "cayenne_footer_cache_mb",
    "cayenne_sort_columns",
    "cayenne_unsupported_type_action",
    "cayenne_upload_concurrency",
    "cayenne_write_concurrency",
    "cayenne_file_watcher",
    "cayenne_s3_region",
    "cayenne_s3_endpoint",
    "cayenne_s3_key",
    "cayenne_s3_secret",
    "cayenne_s3_session_token",
    "cayenne_s3_auth",
    "cayenne_s3_client_timeout",
    "cayenne_s3_allow_http",
    "cayenne_s3_zone_ids",
)


def options(params: Mapping[str, str]) -> dict[str, str]:
    """The applied params, defaults filled in, each value checked.

    Raises:
        ParamError: naming the param whose value is refused, and what to write instead.
    """
    values = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}
    _positive_int(values, "cayenne_target_file_size_mb", 1)
    _positive_int(values, "cayenne_compaction_trigger_files", 2)
    _positive_int(values, "cayenne_compaction_background_interval_ms", 0)
    _positive_int(values, "cayenne_segment_cache_mb", 0)
    strategy = values["cayenne_compression_strategy"].lower()
    if strategy == "zstd":
        raise ParamError(
            "cayenne_compression_strategy",
            "zstd is not available: the vortex-data writer compresses with its own cascade "
            "(btrblocks); use btrblocks or omit the param",
        )
    if strategy != "btrblocks":
        raise ParamError("cayenne_compression_strategy", f"expected btrblocks, got {strategy!r}")
    deletion = values["cayenne_deletion_mode"].lower()
    if deletion == "position":
        raise ParamError(
            "cayenne_deletion_mode",
            "position deletes are not supported: a change names a key, not the file and row "
            "holding it, so deletions are key tombstones; use key or omit the param",
        )
    if deletion != "key":
        raise ParamError("cayenne_deletion_mode", f"expected key, got {deletion!r}")
    if values["cayenne_metastore"].lower() != "sqlite":
        raise ParamError(
            "cayenne_metastore",
            f"only sqlite is available, got {values['cayenne_metastore']!r}",
        )
    values["cayenne_compression_strategy"] = strategy
    values["cayenne_deletion_mode"] = deletion
    return values


def _positive_int(values: dict[str, str], key: str, least: int) -> None:
    try:
        number = int(values[key])
    except ValueError:
        number = least - 1
    if number < least:
        raise ParamError(key, f"expected a whole number of at least {least}, got {values[key]!r}")


SPEC = EngineSpec(
    name="cayenne",
    title="Cayenne",
    accelerator="sync.accelerators.cayenne.engine:CayenneAccelerator",
    modes=("file",),
    modes_note="keeps its tables in Vortex files on disk, so memory mode has no meaning",
    type_support=TypeSupport(structs=True, lists="any"),
    dialect="duckdb",  # queries run in DuckDB over the Vortex files
    placeholder="$",
    shared_readers=True,  # files never change in place: other processes may read them
    file_param="cayenne_file_path",
    params=tuple(DEFAULTS),
    options=options,
    inapplicable_params=INAPPLICABLE,
    extra="cayenne",
)
