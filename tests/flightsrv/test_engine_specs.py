"""Every registered engine's spec is complete and agrees with config validation; an unknown
engine says which there are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlglot.dialects.dialect import Dialect

from flightsrv.config import ConfigError, parse_config
from flightsrv.flightsql.sqlcheck import check
from sync.accelerators import UnknownEngine, dialect_spec, engine_names, engine_spec
from sync.pipeline import STAGING_SUFFIX


def pod(acceleration: dict[str, Any], name: str = "orders") -> dict[str, Any]:
    dataset = {
        "from": "dynamodb:orders",
        "name": name,
        "params": {"dynamodb_aws_region": "us-east-1"},
        "acceleration": {"enabled": True, "refresh_mode": "changes", **acceleration},
    }
    return {"version": "v1", "kind": "Spicepod", "name": "demo", "datasets": [dataset]}


@pytest.mark.parametrize("name", engine_names())
def test_each_spec_is_complete_and_found_by_its_name_and_dialect(name: str) -> None:
    spec = engine_spec(name)
    assert spec.name == name and spec.title
    assert spec.modes and set(spec.modes) <= {"memory", "file"}
    assert Dialect.get_or_raise(spec.dialect)
    # Engines that query through another's SQL (Cayenne through DuckDB) share its spec there.
    speaker = dialect_spec(spec.dialect)
    assert (speaker.placeholder, speaker.value_typed_results) == (
        spec.placeholder,
        spec.value_typed_results,
    )
    module, _, cls = spec.accelerator.partition(":")
    assert module.startswith("sync.accelerators.") and cls
    assert (spec.file_param is None) == (spec.connection is not None)  # a file, or a server
    assert (spec.connection is None) == (spec.server_location is None)
    assert spec.connection is None or spec.extra  # a driver to install names its extra
    assert len(spec.modes) > 1 or spec.modes_note  # a refused mode is explained


@pytest.mark.parametrize("name", engine_names())
def test_config_accepts_each_spec_s_modes_and_params(name: str, tmp_path: Path) -> None:
    spec = engine_spec(name)
    for mode in spec.modes:
        params = {spec.file_param: "x.db"} if spec.file_param and mode == "file" else {}
        raw = pod({"engine": name, "mode": mode, "params": params})
        (ds,) = parse_config(raw, tmp_path / "spicepod.yaml").datasets
        assert (ds.acceleration.engine, ds.acceleration.mode) == (name, mode)
        assert ds.acceleration.file == (tmp_path / "x.db" if params else None)
        assert ds.acceleration.location  # comparable, so datasets can share the database
    for refused in {"memory", "file"} - set(spec.modes):
        with pytest.raises(ConfigError, match=rf"acceleration\.mode: {name} {spec.modes_note}"):
            parse_config(pod({"engine": name, "mode": refused}), tmp_path / "spicepod.yaml")
    for param in spec.params:  # each is known (a value may still be refused, by name)
        try:
            parse_config(pod({"engine": name, "params": {param: "x"}}), tmp_path / "s.yaml")
        except ConfigError as e:
            assert "unknown key" not in str(e) and f"params.{param}" in str(e)


@pytest.mark.parametrize("name", engine_names())
def test_dataset_names_fit_the_engine_s_identifiers(name: str, tmp_path: Path) -> None:
    limit = engine_spec(name).max_identifier_bytes
    if limit is None:
        return
    room = limit - len(STAGING_SUFFIX)
    parse_config(pod({"engine": name}, "n" * room), tmp_path / "spicepod.yaml")
    with pytest.raises(ConfigError, match=rf"name: at most {room} bytes with engine {name}"):
        parse_config(pod({"engine": name}, "n" * (room + 1)), tmp_path / "spicepod.yaml")


@pytest.mark.parametrize("name", engine_names())
def test_the_sql_check_renders_the_spec_s_placeholders(name: str) -> None:
    spec = engine_spec(name)
    p = spec.placeholder
    assert (
        check("SELECT ? AS a, ? AS b", "dynamirror", "public").sql(spec.dialect)
        == f"SELECT {p}1 AS a, {p}2 AS b"
    )


def test_an_unknown_engine_names_the_known_ones(tmp_path: Path) -> None:
    known = ", ".join(engine_names())
    with pytest.raises(UnknownEngine, match=f"unknown engine 'oracle' \\(known: {known}\\)"):
        engine_spec("oracle")
    with pytest.raises(UnknownEngine, match="no engine speaks the 'bigquery' dialect"):
        dialect_spec("bigquery")
    with pytest.raises(ConfigError, match=f"acceleration.engine: expected one of {known}"):
        parse_config(pod({"engine": "oracle"}), tmp_path / "spicepod.yaml")


def test_specs_load_without_engine_drivers() -> None:
    """Config is validated before any engine opens, with optional drivers not installed."""
    code = (
        "import sys\n"
        "from sync.accelerators import engine_names, engine_spec\n"
        "for name in engine_names(): engine_spec(name)\n"
        "print(sorted({'psycopg', 'pgpq', 'vortex'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
