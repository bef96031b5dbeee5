"""A Spice user's pod works unchanged: v2.2 key names and their older aliases, the keys that
do not apply here (one warning each, saying why), "did you mean" for the rest, and the
acceleration keys Spice users put on change datasets."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flightsrv.config import ConfigError, parse_config
from flightsrv.spicekeys import NOT_APPLICABLE
from tests.flightsrv.test_config import pod


def parse(tmp_path: Path, doc: dict[str, Any]) -> Any:
    return parse_config(doc, tmp_path / "spicepod.yaml")


def error(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(tmp_path, doc)
    assert "\n" not in str(raised.value)
    return str(raised.value)


@pytest.mark.parametrize(
    "params, lag, behavior",
    [
        ({"dynamodb_replication_ready_lag": "5s"}, 5, "error"),
        ({"ready_lag": "5s"}, 5, "error"),
        ({"dynamodb_replication_ready_lag": "5s", "ready_lag": "5s"}, 5, "error"),
        ({"dynamodb_replication_invalid_checkpoint_behavior": "restart"}, 2, "ready_before_load"),
        ({"dynamodb_replication_invalid_checkpoint_behavior": "error"}, 2, "error"),
        ({"lag_exceeds_shard_retention_behavior": "ready_after_load"}, 2, "ready_after_load"),
        (
            {
                "dynamodb_replication_invalid_checkpoint_behavior": "restart",
                "lag_exceeds_shard_retention_behavior": "ready_before_load",
            },
            2,
            "ready_before_load",
        ),
    ],
)
def test_current_names_and_their_older_aliases(
    tmp_path: Path, params: dict[str, str], lag: float, behavior: str
) -> None:
    doc = pod(params__ready_lag=None)
    del doc["datasets"][0]["params"]["ready_lag"]
    doc["datasets"][0]["params"].update(params)
    (ds,) = parse(tmp_path, doc).datasets
    assert ds.ready_lag == timedelta(seconds=lag)
    assert ds.retention_behavior == behavior


@pytest.mark.parametrize(
    "params, expected",
    [
        (
            {"dynamodb_replication_ready_lag": "5s", "ready_lag": "2s"},
            "params: dynamodb_replication_ready_lag: '5s' and ready_lag: '2s' are one setting "
            "under its current and its older name, with different values; keep one of them",
        ),
        (
            {
                "dynamodb_replication_invalid_checkpoint_behavior": "restart",
                "lag_exceeds_shard_retention_behavior": "error",
            },
            "dynamodb_replication_invalid_checkpoint_behavior: 'restart' and "
            "lag_exceeds_shard_retention_behavior: 'error' are one setting",
        ),
        ({"ready_lag": "soon"}, "params.ready_lag: invalid duration"),  # the name written
        (
            {"dynamodb_replication_invalid_checkpoint_behavior": "panic"},
            "params.dynamodb_replication_invalid_checkpoint_behavior: expected one of error, "
            "restart, ready_before_load, ready_after_load, got 'panic'",
        ),
        (
            {"dynamodb_aws_iam_role_source": "vault"},
            "params.dynamodb_aws_iam_role_source: expected one of auto, metadata, env",
        ),
        (
            {"dynamodb_replication_ready_lagg": "1s"},
            "params.dynamodb_replication_ready_lagg: unknown key (did you mean "
            "dynamodb_replication_ready_lag?)",
        ),
    ],
)
def test_alias_conflicts_and_bad_values_name_the_key_written(
    tmp_path: Path, params: dict[str, str], expected: str
) -> None:
    doc = pod()
    del doc["datasets"][0]["params"]["ready_lag"]
    doc["datasets"][0]["params"].update(params)
    assert expected in error(tmp_path, doc)


def test_iam_role_source_reaches_the_source_settings(tmp_path: Path) -> None:
    doc = pod(params__dynamodb_aws_auth="iam_role", params__dynamodb_aws_iam_role_source="env")
    (ds,) = parse(tmp_path, doc).datasets
    assert (ds.source.auth, ds.source.iam_role_source) == ("iam_role", "env")


def _every_inapplicable_key() -> dict[str, Any]:
    doc = pod()
    dataset = doc["datasets"][0]
    for key in NOT_APPLICABLE["top"]:
        doc[key] = [{"name": "x"}]
    for key in NOT_APPLICABLE["dataset"]:
        dataset[key] = "x"
    for key in NOT_APPLICABLE["acceleration"]:
        dataset["acceleration"][key] = "1h"
    doc["runtime"] = {key: {"enabled": True} for key in NOT_APPLICABLE["runtime"]}
    second = {**dataset, "name": "orders_again"}
    second["acceleration"] = dict(dataset["acceleration"], params={})
    doc["datasets"].append(second)
    return doc


def test_keys_that_do_not_apply_are_accepted_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flightsrv.config")
    config = parse(tmp_path, _every_inapplicable_key())
    assert [d.name for d in config.datasets] == ["orders", "orders_again"]
    warnings = [r.getMessage() for r in caplog.records if "not applicable" in r.getMessage()]
    expected = sum(len(keys) for keys in NOT_APPLICABLE.values())
    assert len(warnings) == expected, warnings  # the second dataset warns about nothing again
    by_key = {w.split(": not applicable")[0].rsplit(".", 1)[-1]: w for w in warnings}
    for section, reasons in NOT_APPLICABLE.items():
        for key, reason in reasons.items():
            assert reason in by_key[key], (section, key)
    assert "refresh_mode: changes applies each change" in by_key["refresh_cron"]
    assert "deleted here" in by_key["retention_period"]


@pytest.mark.parametrize(
    "place, key, expected",
    [
        ("top", "dataset", "dataset: unknown key (did you mean datasets?)"),
        ("dataset", "time_colum", "time_colum: unknown key (did you mean time_column?)"),
        (
            "acceleration",
            "refresh_cronn",
            "refresh_cronn: unknown key (did you mean refresh_cron?)",
        ),
        ("runtime", "result_cache", "result_cache: unknown key (did you mean results_cache?)"),
        ("dataset", "zzz", "zzz: unknown key (expected one of"),
    ],
)
def test_a_key_spice_does_not_have_either_is_an_error_with_a_suggestion(
    tmp_path: Path, place: str, key: str, expected: str
) -> None:
    doc = pod()
    target = {
        "top": doc,
        "dataset": doc["datasets"][0],
        "acceleration": doc["datasets"][0]["acceleration"],
        "runtime": doc.setdefault("runtime", {}),
    }[place]
    target[key] = "x"
    assert expected in error(tmp_path, doc)


@pytest.mark.parametrize(
    "acceleration, key",
    [
        ({"primary_key": "order_id"}, ("order_id",)),
        ({"primary_key": "(customer_id, created_at)"}, ("customer_id", "created_at")),
        ({"primary_key": ["pk", "sk"], "on_conflict": {"(pk, sk)": "upsert"}}, ("pk", "sk")),
        ({"on_conflict": {"order_id": "upsert"}}, None),
    ],
)
def test_primary_key_and_on_conflict_upsert(
    tmp_path: Path, acceleration: dict[str, Any], key: tuple[str, ...] | None
) -> None:
    doc = pod()
    doc["datasets"][0]["acceleration"].update(acceleration)
    (ds,) = parse(tmp_path, doc).datasets
    assert ds.primary_key == key


@pytest.mark.parametrize(
    "acceleration, expected",
    [
        (
            {"primary_key": "id", "on_conflict": {"id": "drop"}},
            "acceleration.on_conflict.id: 'drop' is not available: a change mirror applies each "
            "change of a key as the table made it, which is upsert",
        ),
        (
            {"primary_key": "id", "on_conflict": {"other": "upsert"}},
            "acceleration.on_conflict.other: expected the primary key (id)",
        ),
        ({"primary_key": 7}, "acceleration.primary_key: expected a column or a list of them"),
        ({"on_conflict": "upsert"}, "acceleration.on_conflict: expected a mapping"),
    ],
)
def test_on_conflict_other_than_upsert_is_explained(
    tmp_path: Path, acceleration: dict[str, Any], expected: str
) -> None:
    doc = pod()
    doc["datasets"][0]["acceleration"].update(acceleration)
    assert expected in error(tmp_path, doc)


def test_engine_arrow_is_served_from_duckdb_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "flightsrv.config")
    doc = pod(acceleration__engine="arrow", acceleration__mode="memory", acceleration__params={})
    (ds,) = parse(tmp_path, doc).datasets
    assert (ds.acceleration.engine, ds.acceleration.mode) == ("duckdb", "memory")
    assert any("engine arrow is served from DuckDB in memory" in r.message for r in caplog.records)
    doc = pod(acceleration__engine="arrow", acceleration__mode="file")
    assert "acceleration.mode: expected one of memory" in error(tmp_path, doc)


def test_indexes_as_spice_writes_them(tmp_path: Path) -> None:
    doc = pod()
    doc["datasets"][0]["acceleration"]["indexes"] = {
        "status": "enabled",
        "(customer_id, created_at)": "enabled",
        "email": "unique",
    }
    (ds,) = parse(tmp_path, doc).datasets
    assert [(i.columns, i.unique) for i in ds.indexes] == [
        (("status",), False),
        (("customer_id", "created_at"), False),
        (("email",), True),
    ]
    doc["datasets"][0]["acceleration"]["indexes"] = {"status": "fulltext"}
    assert "acceleration.indexes.status: expected enabled or unique, got 'fulltext'" in error(
        tmp_path, doc
    )


@pytest.mark.parametrize(
    "views, expected",
    [
        ([{"name": "v", "sql": "DELETE FROM orders"}], "views: v: sql: read-only server"),
        ([{"name": "v", "sql": "SELECT * FROM customers"}], "views: v: sql: reads 'customers'"),
        ([{"name": "v", "sql": "SELECT read_text('/etc/passwd')"}], "read_text() is not allowed"),
        ([{"name": "v", "sql": "SELECT * FROM orders WHERE pk = ?"}], "takes no parameters"),
        ([{"name": "orders", "sql": "SELECT 1"}], "views: orders: name: a dataset"),
        ([{"name": "v", "sql": "SELECT * FROM w"}, {"name": "w", "sql": "SELECT 1"}], "'w'"),
        ([{"name": "v"}], "views: v: sql: expected a SELECT statement"),
        ([{"name": "bad/name", "sql": "SELECT 1"}], "views[0]: name: 'bad/name' holds '/'"),
        ([{"name": "v", "sql": "SELECT 1", "query": "x"}], "views[0]: query: unknown key"),
    ],
)
def test_a_view_that_cannot_be_served_is_refused_at_start(
    tmp_path: Path, views: list[dict[str, Any]], expected: str
) -> None:
    doc = pod()
    doc["views"] = views
    assert expected in error(tmp_path, doc)


def test_views_over_datasets_and_earlier_views(tmp_path: Path) -> None:
    doc = pod()
    doc["views"] = [
        {"name": "paid", "sql": "SELECT pk, qty FROM orders WHERE status = 'paid'"},
        {"name": "big_paid", "sql": "SELECT * FROM paid WHERE qty > 10", "description": "x"},
    ]
    views = parse(tmp_path, doc).views
    assert [v.name for v in views] == ["paid", "big_paid"]


SPICE_DOCS_POD = """
version: v1
kind: Spicepod
name: dynamodb-streams
secrets:
  - from: env
    name: env
datasets:
  - from: dynamodb:{table}
    name: orders
    description: orders mirrored from DynamoDB Streams
    time_column: created_at
    params:
      dynamodb_aws_region: us-east-1
      dynamodb_aws_auth: key
      dynamodb_aws_access_key_id: ${{secrets:SPICE_TEST_KEY_ID}}
      dynamodb_aws_secret_access_key: ${{secrets:SPICE_TEST_SECRET}}
      endpoint_url: {endpoint}
      {ready_lag}: 1s
      {behavior}: {behavior_value}
      dynamodb_replication_initial_snapshot: auto
    acceleration:
      enabled: true
      engine: sqlite
      mode: file
      refresh_mode: changes
      refresh_check_interval: 10s
      primary_key: pk
      on_conflict:
        pk: upsert
      indexes:
        status: enabled
        "(status, qty)": enabled
      params:
        sqlite_file: ./data/orders.sqlite
    metrics:
      - name: lag_ms
      - name: records_consumed_total
views:
  - name: paid_orders
    sql: SELECT pk, qty FROM orders WHERE status = 'paid'
runtime:
  results_cache:
    enabled: true
"""


@pytest.mark.slow  # a runtime process against the emulator
@pytest.mark.parametrize(
    "ready_lag, behavior, behavior_value",
    [
        (
            "dynamodb_replication_ready_lag",
            "dynamodb_replication_invalid_checkpoint_behavior",
            "restart",
        ),
        ("ready_lag", "lag_exceeds_shard_retention_behavior", "ready_before_load"),
    ],
    ids=["spice-2.2-names", "older-names"],
)
def test_a_pod_as_spice_docs_write_it_starts_and_serves(
    tmp_path: Path, emulator: Any, ready_lag: str, behavior: str, behavior_value: str
) -> None:
    import json
    import random
    import sqlite3
    import urllib.request

    from tests.dynamo import create_table, random_item
    from tests.runtime_process import RuntimeProcess

    ddb = emulator.client()
    table = f"spice_docs_{ready_lag[:5]}"
    create_table(ddb, table)
    rng = random.Random(1)
    items = [random_item(rng, f"k{i}", 0) for i in range(40)]
    for item in items:
        ddb.put_item(TableName=table, Item=item)
    runtime = RuntimeProcess(
        tmp_path, [], env={"SPICE_TEST_KEY_ID": "id", "SPICE_TEST_SECRET": "secret"}
    )
    runtime.config.write_text(
        SPICE_DOCS_POD.format(
            table=table,
            endpoint=emulator.url,
            ready_lag=ready_lag,
            behavior=behavior,
            behavior_value=behavior_value,
        )
    )
    runtime.start()
    try:
        runtime.wait_ready()
        request = urllib.request.Request(
            f"http://127.0.0.1:{runtime.http_port}/v1/sql",
            data=b"SELECT count(*) AS n FROM paid_orders",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            served = json.loads(response.read())
        paid = sum(1 for i in items if i["status"]["S"] == "paid")
        assert served == [{"n": paid}]
        with sqlite3.connect(
            f"file:{tmp_path / 'data' / 'orders.sqlite'}?mode=ro", uri=True
        ) as con:
            indexes = {
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                )
            }
        assert indexes == {"orders_status_idx", "orders_status_qty_idx"}
        log = runtime.log.read_text()
        for key in ("time_column", "refresh_check_interval", "results_cache"):
            assert log.count(f".{key}: not applicable here") == 1, key
    finally:
        runtime.kill()
