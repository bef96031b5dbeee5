"""Spice's spicepod keys as this runtime reads them: current names with their older aliases,
the keys Spice has that mean nothing for a DynamoDB change mirror (accepted, each warned about
once, saying why), and "did you mean" for a key neither knows.

A Spice user's file works unchanged: what applies is applied, what cannot apply is said once,
and only a key Spice does not have either is an error.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("flightsrv.config")

# Spice v2.2 renamed the DynamoDB replication params; the older names (this README's) still
# work. Current name → older name.
RENAMED_PARAMS = {
    "dynamodb_replication_ready_lag": "ready_lag",
    "dynamodb_replication_invalid_checkpoint_behavior": "lag_exceeds_shard_retention_behavior",
}
# Spice's ``restart`` (load again from a fresh snapshot) is this product's ready_before_load:
# the old rows keep serving until the new load swaps in.
RESTART_MEANS = "ready_before_load"

_REFRESH = (
    "refresh_mode: changes applies each change as it arrives, so there is no scheduled "
    "refresh to configure"
)
_RETENTION = (
    "the mirror holds what the table holds: an item deleted in DynamoDB (or by its TTL) is "
    "deleted here"
)
_TIME = "a change mirror applies every change by key; no time column drives its refreshes"

# Keys Spice has that do not apply here, by where they sit, with the reason given once.
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "top": {
        "models": "no models run in this runtime; it serves DynamoDB mirrors over Flight SQL",
        "embeddings": "no embedding models run in this runtime",
        "catalogs": "only dynamodb: datasets are mirrored; catalogs are not connected",
        "tools": "no tools run in this runtime",
        "evals": "no evals run in this runtime",
        "workers": "no workers run in this runtime",
        "dependencies": "spicepod dependencies are not fetched; list the datasets here",
        "extensions": "no extensions load in this runtime",
    },
    "dataset": {
        "time_column": _TIME,
        "time_format": _TIME,
        "time_partition_column": _TIME,
        "time_partition_format": _TIME,
        "ready_state": (
            "a dataset is served once loaded and reports Ready by its stream lag "
            "(dynamodb_replication_ready_lag)"
        ),
        "invalid_type_action": "column types follow the items' attributes; no value is dropped",
        "unsupported_type_action": (
            "column types follow the items' attributes; no value is dropped"
        ),
        "replication": "replicating a dataset to a remote Spice deployment does not exist here",
        "embeddings": "no embedding models run in this runtime",
        "vectors": "no embedding models run in this runtime",
        "check_availability": "the table is described at every start; a missing one is an error",
        "has_metadata_table": "no metadata tables are served",
    },
    "acceleration": {
        **dict.fromkeys(
            (
                "refresh_check_interval",
                "refresh_cron",
                "refresh_data_window",
                "refresh_append_overlap",
                "refresh_retry_enabled",
                "refresh_retry_max_attempts",
                "refresh_jitter_enabled",
                "refresh_jitter_max",
                "refresh_on_startup",
            ),
            _REFRESH,
        ),
        **dict.fromkeys(
            (
                "retention_check_enabled",
                "retention_period",
                "retention_check_interval",
                "retention_sql",
            ),
            _RETENTION,
        ),
        "on_zero_results": "queries are answered from the mirror alone, never from DynamoDB",
    },
    "runtime": {
        "results_cache": (
            "no results cache: every query reads the mirror as it is, never rows older than "
            "what it shows"
        ),
        "caching": (
            "no results cache: every query reads the mirror as it is, never rows older than "
            "what it shows"
        ),
        "task_history": "no task history table is kept",
        "cors": "the HTTP endpoints send no CORS headers; put a proxy in front for browsers",
        "tracing": "metrics go out through OpenTelemetry (runtime.telemetry); no traces",
        "dataset_load_parallelism": "every dataset loads at once, each on its own thread",
        "shutdown_timeout": "a stop commits the batch in flight and exits (SIGTERM)",
    },
}


class InapplicableKeys:
    """Warns about each not-applicable key once per file, however often it appears."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self.seen: list[str] = []  # the keys warned about, in order (for tests and status)

    def drop(self, mapping: Mapping[str, Any], section: str, where: str) -> dict[str, Any]:
        """``mapping`` without ``section``'s not-applicable keys, each warned about once."""
        reasons = NOT_APPLICABLE[section]
        kept = {}
        for key, value in mapping.items():
            reason = reasons.get(key)
            if reason is None:
                kept[key] = value
            elif (section, key) not in self._warned:
                self._warned.add((section, key))
                self.seen.append(key)
                log.warning("%s.%s: not applicable here, ignored: %s", where, key, reason)
        return kept


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """ " (did you mean X?)" for the closest known key, or nothing."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
