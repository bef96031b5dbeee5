"""The DynamoDB type system: inference, conversion, JSON text, Go time layouts, unnesting,
declared columns, schema evolution and TTL soft deletes — first on Arrow alone, then through
every engine (DuckDB, SQLite, PostgreSQL) from raw, AWS-shaped Scan and GetRecords bodies.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flightsrv.config import ConfigError, parse_config
from sync.accelerators.base import Accelerator, open_accelerator
from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.dynamodb.convert import b64decode, to_column
from sync.dynamodb.golayout import compile_layout, parse_date
from sync.dynamodb.infer import NumberOverflowError, infer_columns, infer_type
from sync.dynamodb.jsontext import json_text
from sync.dynamodb.rawparse import parse_get_records, parse_scan
from sync.dynamodb.records import evolve_spec, image_rows, stream_rows, upserts
from sync.dynamodb.typedvalues import (
    DuplicateColumnError,
    bool_text,
    elements,
    present_tags,
    relist,
    unnest,
)
from sync.dynamodb.typeoptions import DELETED_AT, TypeOptions
from sync.pipeline import STAGING_SUFFIX, DatasetSync
from sync.schema import (
    Column,
    ColumnType,
    DecimalType,
    DeclaredColumn,
    ListType,
    SqlType,
    StructType,
    TableSpec,
    TypeSupport,
    parse_type,
)
from sync.settings import DEFAULT_TIME_FORMAT, AccelerationSettings, TypeSettings
from sync.status import State
from sync.widening import unify
from tests.dynamo import REGION, Emulator, create_table
from tests.harness import mirror_rows, settings_for, start, wait_for
from tests.streamfaults import StreamFaultProxy

ENGINES = ["duckdb", "sqlite", "postgres"]
DUCKDB = TypeSupport(structs=True, lists="any")
SQLITE = TypeSupport()
POSTGRES = TypeSupport(structs=False, lists="uniform")
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
V, B, N64, D, T, DT, J = (
    ColumnType.VARCHAR,
    ColumnType.BOOLEAN,
    ColumnType.BIGINT,
    ColumnType.DOUBLE,
    ColumnType.TIMESTAMP,
    ColumnType.DATE,
    ColumnType.JSON,
)


# -- raw DynamoDB bodies, as AWS sends them ------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scan_body(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"Items": items, "Count": len(items), "ScannedCount": len(items)}).encode()


def typed(*items: dict[str, Any]) -> pa.StructArray:
    """Items in DynamoDB JSON, parsed as the Scan path parses them."""
    page = parse_scan(scan_body(list(items))).items
    assert page is not None
    return page


def attr(*values: dict[str, Any] | None) -> pa.StructArray:
    """One attribute's typed values, one per item (None: absent)."""
    items = [
        {"pk": {"S": str(i)}, **({"a": v} if v is not None else {})} for i, v in enumerate(values)
    ]
    images = typed(*items)
    return images.field("a") if "a" in images.type.names else pa.nulls(len(values), pa.struct([]))


_sequence = iter(range(10**20, 10**21))


def record(
    event: str,
    pk: str,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    ttl: bool = False,
    when: float = 1_795_520_000.5,
) -> dict[str, Any]:
    """A GetRecords record as DynamoDB Streams returns it (NEW_AND_OLD_IMAGES)."""
    body: dict[str, Any] = {
        "eventID": f"{next(_sequence):x}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": when,
            "Keys": {"pk": {"S": pk}},
            "SequenceNumber": str(next(_sequence)),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    if new is not None:
        body["dynamodb"]["NewImage"] = {"pk": {"S": pk}, **new}
    if old is not None:
        body["dynamodb"]["OldImage"] = {"pk": {"S": pk}, **old}
    if ttl:  # what a deletion by Time to Live carries
        body["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return body


def records_body(*records: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(records), "NextShardIterator": "it-1"}).encode()


# -- inference -------------------------------------------------------------------------------

N = {"N": "42"}
MAP = {"M": {"city": {"S": "Paris"}, "zip": {"N": "75001"}}}
MIXED = {"L": [{"S": "x"}, {"N": "1"}, {"BOOL": True}]}
CITY_ZIP = StructType((("city", V), ("zip", N64)))


@pytest.mark.parametrize(
    ("values", "duckdb", "sqlite", "postgres"),
    [
        ([{"N": "1"}, {"N": "-9223372036854775808"}], N64, N64, N64),
        ([{"N": "1"}, {"N": "1.5"}], D, D, D),
        ([{"N": "1E+3"}], D, D, D),
        ([{"S": "2024-03-15T14:30:00.123+02:00"}, {"S": "2024-03-15T14:30:00Z"}], T, T, T),
        ([{"S": "2024-03-15"}, {"S": "2024-02-29"}], DT, DT, DT),
        ([{"S": "2024-03-15"}, {"S": "2024-03-15T14:30:00Z"}], V, V, V),  # as Spice: no mix
        ([{"S": "2024-02-30"}], V, V, V),  # no such day
        ([{"S": "2024-03-15T14:30:00Z"}, {"S": "soon"}], V, V, V),
        ([{"BOOL": True}], B, B, B),
        ([{"B": b64(b"\x00")}], ColumnType.BLOB, ColumnType.BLOB, ColumnType.BLOB),
        ([{"NULL": True}, None], None, None, None),
        ([{"N": "1"}, {"S": "x"}], V, V, V),
        ([MAP], CITY_ZIP, J, J),
        ([{"M": {}}], None, J, J),  # an empty map: no struct fields to declare yet
        ([{"L": [{"N": "1"}, {"N": "2"}]}], ListType(N64), J, ListType(N64)),
        ([{"L": [{"N": "1"}, {"N": "2.5"}]}], ListType(D), J, ListType(D)),
        ([MIXED], ListType(V), J, J),
        ([{"L": [MAP]}], ListType(CITY_ZIP), J, J),
        ([{"L": []}], ListType(V), J, ListType(V)),
        ([{"SS": ["a", "b"]}], ListType(V), J, ListType(V)),
        ([{"NS": ["1", "2"]}, {"NS": ["3"]}], ListType(N64), J, ListType(N64)),
        ([{"NS": ["1", "0.5"]}], ListType(D), J, ListType(D)),
        ([{"BS": [b64(b"x")]}], ListType(ColumnType.BLOB), J, ListType(ColumnType.BLOB)),
        ([MAP, {"L": []}], J, J, J),  # a map here, a list there
        ([MAP, {"S": "x"}], V, V, V),
        ([{"M": {"Key": {"N": "1"}, "key": {"N": "2"}}}], J, J, J),  # not a SQL struct
    ],
)
def test_inference_follows_spice_per_engine(
    values: list[dict[str, Any] | None],
    duckdb: SqlType | None,
    sqlite: SqlType | None,
    postgres: SqlType | None,
) -> None:
    typed_values = attr(*values)
    for support, expected in ((DUCKDB, duckdb), (SQLITE, sqlite), (POSTGRES, postgres)):
        assert infer_type(typed_values, TypeOptions(support=support)) == expected, support


def test_a_key_keeps_its_text_even_when_it_looks_like_a_time() -> None:
    images = typed({"pk": {"S": "2024-01-01"}, "day": {"S": "2024-01-01"}})
    columns = {c.name: c.type for c in infer_columns(images, key=("pk",))}
    assert columns == {"day": DT, "pk": V}


def test_nested_inference_applies_the_scalar_rules_at_every_depth() -> None:
    value = {
        "M": {
            "at": {"S": "2024-01-01T00:00:00Z"},
            "day": {"S": "2024-01-01"},
            "big": {"N": "123456789012345678901"},
            "inner": {"M": {"flag": {"BOOL": False}, "raw": {"B": b64(b"x")}}},
        }
    }
    inner = StructType((("flag", B), ("raw", ColumnType.BLOB)))
    expected = StructType((("at", T), ("big", DecimalType(0)), ("day", DT), ("inner", inner)))
    assert infer_type(attr(value), TypeOptions(support=DUCKDB)) == expected


@pytest.mark.parametrize(
    ("numbers", "options", "expected"),
    [
        (["9223372036854775807", "-9223372036854775808"], {}, N64),
        (["9223372036854775808"], {}, DecimalType(0)),  # BIGINT's range ends: exact DECIMAL
        (["-99999999999999999999999999999999999999"], {}, DecimalType(0)),
        (["1" + "0" * 38], {}, D),  # 39 digits: beyond DECIMAL(38) too
        (["1.5", "100"], {"number_type": "decimal"}, DecimalType(9)),
        (["1" * 29], {"number_type": "decimal"}, DecimalType(9)),
        (["1" * 30], {"number_type": "decimal"}, D),  # DECIMAL(38,9) holds 29 digits
        (["1E+29"], {"number_type": "decimal"}, D),
        (["1E+28"], {"number_type": "decimal", "decimal_scale": 2}, DecimalType(2)),
    ],
)
def test_numbers_beyond_the_type_widen_it(
    numbers: list[str], options: dict[str, Any], expected: SqlType
) -> None:
    values = attr(*({"N": n} for n in numbers))
    assert infer_type(values, TypeOptions(TypeSettings(**options))) == expected


@pytest.mark.parametrize(
    ("numbers", "options"),
    [
        (["9223372036854775808"], {}),
        (["1" * 30], {"number_type": "decimal"}),
    ],
)
def test_numbers_beyond_the_type_fail_loudly_with_number_overflow_error(
    numbers: list[str], options: dict[str, Any]
) -> None:
    values = attr(*({"N": n} for n in numbers))
    with pytest.raises(NumberOverflowError, match=r"'price'.*number_overflow: error"):
        infer_type(values, TypeOptions(TypeSettings(number_overflow="error", **options)), "price")


def test_unify_rules() -> None:
    assert unify(N64, D) == D
    assert unify(N64, DecimalType(0)) == DecimalType(0)
    assert unify(N64, DecimalType(30)) == D  # 8 integer digits cannot hold every BIGINT
    assert unify(DecimalType(2), D) == D
    assert unify(T, DT) == V
    assert unify(B, N64) == V
    assert unify(ListType(N64), ListType(D), DUCKDB) == ListType(D)
    assert unify(ListType(N64), ListType(V), DUCKDB) == ListType(V)
    assert unify(ListType(N64), ListType(V), POSTGRES) == J  # not one scalar type: jsonb
    assert unify(ListType(N64), ListType(D), POSTGRES) == ListType(D)
    grown = unify(StructType((("a", N64),)), StructType((("b", V), ("a", D))), DUCKDB)
    assert grown == StructType((("a", D), ("b", V)))
    assert unify(CITY_ZIP, ListType(N64), DUCKDB) == J
    assert unify(J, CITY_ZIP) == J
    assert unify(J, V) == V


# -- conversion ------------------------------------------------------------------------------


def test_scalars_convert_in_bulk() -> None:
    options = TypeOptions()
    numbers = attr({"N": "1"}, {"N": "-2"}, None)
    assert to_column(numbers, N64, 3, options).to_pylist() == [1, -2, None]
    assert to_column(numbers, D, 3, options).to_pylist() == [1.0, -2.0, None]
    exact = attr({"N": "12345678901234567890.123456789"}, {"N": "0.1"}, {"N": "1.0000000005"})
    assert to_column(exact, DecimalType(9), 3, options).to_pylist() == [
        Decimal("12345678901234567890.123456789"),
        Decimal("0.100000000"),
        Decimal("1.000000000"),  # beyond the scale: rounded half to even
    ]
    times = attr({"S": "2024-03-15T14:30:00.123456789+05:30"}, {"S": "2024-03-15T14:30:00Z"})
    assert to_column(times, T, 2, options).to_pylist() == [
        datetime(2024, 3, 15, 9, 0, 0, 123456, tzinfo=UTC),
        datetime(2024, 3, 15, 14, 30, tzinfo=UTC),
    ]
    days = attr({"S": "2024-02-29"}, None)
    assert to_column(days, DT, 2, options).to_pylist() == [date(2024, 2, 29), None]
    raw = attr({"B": b64(b"\x00\xff")}, {"B": b64(b"")})
    assert to_column(raw, ColumnType.BLOB, 2, options).to_pylist() == [b"\x00\xff", b""]


def test_varchar_columns_render_every_kind_of_value_as_text() -> None:
    values = attr(
        {"S": "text"},
        {"N": "1.50"},
        {"BOOL": False},
        {"B": b64(b"\x01")},
        MAP,
        {"SS": ["a"]},
        {"NULL": True},
        None,
    )
    assert to_column(values, V, 8).to_pylist() == [
        "text",
        "1.50",
        "false",
        "AQ==",
        '{"city":"Paris","zip":75001}',
        '["a"]',
        None,
        None,
    ]


def test_maps_and_lists_become_struct_and_list_columns() -> None:
    values = attr(
        {"M": {"city": {"S": "Paris"}, "tags": {"SS": ["a", "b"]}, "n": {"L": [MAP]}}},
        {"M": {"city": {"S": "Lyon"}}},  # absent keys: null fields
        {"M": {}},
        None,
    )
    ctype = infer_type(values, TypeOptions(support=DUCKDB))
    assert ctype == StructType((("city", V), ("n", ListType(CITY_ZIP)), ("tags", ListType(V))))
    column = to_column(values, ctype, 4, TypeOptions(support=DUCKDB))
    assert column.type == ctype.arrow
    assert column.to_pylist() == [
        {"city": "Paris", "n": [{"city": "Paris", "zip": 75001}], "tags": ["a", "b"]},
        {"city": "Lyon", "n": None, "tags": None},
        {"city": None, "n": None, "tags": None},
        None,
    ]
    sliced = to_column(values.slice(1, 2), ctype, 2, TypeOptions(support=DUCKDB))
    assert sliced.to_pylist() == column.to_pylist()[1:3]


def test_sets_and_lists_of_mixed_kinds_unify_their_elements() -> None:
    values = attr(MIXED, {"SS": ["s"]}, {"NS": ["7"]}, {"L": []})
    ctype = infer_type(values, TypeOptions(support=DUCKDB))
    assert ctype == ListType(V)
    assert to_column(values, ctype, 4).to_pylist() == [["x", "1", "true"], ["s"], ["7"], []]


def test_json_text_renders_plain_values_and_omits_absent_keys() -> None:
    values = attr(
        {
            "M": {
                "s": {"S": 'quote " backslash \\ newline \n tab \t bell \x07 é'},
                "n": {"N": "-1.5E+3"},
                "b": {"BOOL": True},
                "nothing": {"NULL": True},
                "raw": {"B": b64(b"\xff")},
                "list": {"L": [{"N": "1"}, {"S": "x"}, {"M": {}}, {"L": []}, {"NULL": True}]},
                "ss": {"SS": ['a"b']},
                "ns": {"NS": ["1", "2.5"]},
                "bs": {"BS": [b64(b"\x00")]},
                'key "quoted"': {"S": "k"},
            }
        },
        {"M": {"s": {"S": "only this one"}}},
        {"L": [MAP]},
        {"SS": ["x", "y"]},
        None,
    )
    texts = json_text(values).to_pylist()
    assert [json.loads(t) if t is not None else None for t in texts] == [
        {
            "s": 'quote " backslash \\ newline \n tab \t bell \x07 é',
            "n": -1500.0,
            "b": True,
            "nothing": None,
            "raw": "/w==",
            "list": [1, "x", {}, [], None],
            "ss": ['a"b'],
            "ns": [1, 2.5],
            "bs": ["AA=="],
            'key "quoted"': "k",
        },
        {"s": "only this one"},  # no "n": null, "b": null … for keys this item lacks
        [{"city": "Paris", "zip": 75001}],
        ["x", "y"],
        None,
    ]
    assert texts[1] == '{"s":"only this one"}'  # compact


def test_base64_decoding_in_bulk_matches_value_by_value() -> None:
    rng = random.Random(7)
    blobs = [rng.randbytes(rng.randrange(0, 40)) for _ in range(500)]
    strings = pa.array([b64(b) if i % 7 else None for i, b in enumerate(blobs)])
    expected = [b if i % 7 else None for i, b in enumerate(blobs)]
    assert b64decode(strings).to_pylist() == expected
    assert b64decode(strings.slice(3, 100)).to_pylist() == expected[3:103]
    assert b64decode(pa.array(["YQ"])).to_pylist() == [b"a"]  # unpadded: the slow path
    assert b64decode(pa.nulls(2, pa.string())).to_pylist() == [None, None]


# -- Go time layouts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "value", "expected"),
    [
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-15T14:30:00.123Z", (14, 30, 0, 123000)),
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-15T14:30:00-07:00", (21, 30, 0, 0)),
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-15T9:30:00+01:00", (8, 30, 0, 0)),
        ("2006-01-02T15:04:05Z07:00", "2024-03-15T14:30:00.5+00:30", (14, 0, 0, 500000)),
        ("2006-01-02 15:04:05", "2024-03-15 14:30:00", (14, 30, 0, 0)),  # no zone: UTC
        ("01/02/2006 15:04:05", "03/15/2024 14:30:00", (14, 30, 0, 0)),
        ("02/01/2006 15:04:05", "15/03/2024 14:30:00", (14, 30, 0, 0)),
        ("Jan 2, 2006 3:04:05 PM", "Mar 15, 2024 2:30:00 PM", (14, 30, 0, 0)),
        ("Jan 2, 2006 3:04:05 PM", "Mar 15, 2024 12:30:00 AM", (0, 30, 0, 0)),
        ("January _2 06 15:04", "March 15 24 14:30", (14, 30, 0, 0)),
        ("20060102150405", "20240315143000", (14, 30, 0, 0)),
        ("Mon, 02 Jan 2006 15:04:05 MST", "Fri, 15 Mar 2024 14:30:00 GMT", (14, 30, 0, 0)),
        ("2006-01-02T15:04:05-0700", "2024-03-15T14:30:00+0130", (13, 0, 0, 0)),
        ("2006-01-02T15:04:05.999999999Z07", "2024-03-15T14:30:00.000001-02", (16, 30, 0, 1)),
    ],
)
def test_go_layouts_parse_in_bulk(
    layout: str, value: str, expected: tuple[int, int, int, int]
) -> None:
    (parsed,) = compile_layout(layout).parse(pa.array([value])).to_pylist()
    hour, minute, second, micros = expected
    assert parsed == datetime(2024, 3, 15, hour, minute, second, micros, tzinfo=UTC)


@pytest.mark.parametrize(
    ("layout", "value"),
    [
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-15 14:30:00Z"),  # space, not T
        ("2006-01-02T15:04:05.000Z07:00", "2024-03-15T14:30:00"),  # the zone is required
        ("2006-01-02T15:04:05.000Z07:00", "2024-02-30T14:30:00Z"),  # no such day
        ("2006-01-02 15:04:05", "2024-03-15 24:00:00"),
        ("Jan 2, 2006", "Foo 15, 2024"),
    ],
)
def test_go_layouts_reject_what_does_not_match(layout: str, value: str) -> None:
    assert compile_layout(layout).parse(pa.array([value, None])).to_pylist() == [None, None]


def test_a_custom_time_format_drives_inference() -> None:
    values = attr({"S": "15/03/2024 14:30"}, {"S": "01/01/2025 00:00"})
    assert infer_type(values) == V  # not the default layout
    options = TypeOptions(TypeSettings(time_format="02/01/2006 15:04"))
    assert infer_type(values, options) == T
    assert to_column(values, T, 2, options).to_pylist()[0] == datetime(
        2024, 3, 15, 14, 30, tzinfo=UTC
    )


def test_dates_and_bad_layouts() -> None:
    assert parse_date(pa.array(["2024-02-29", "2023-02-29", "2024-1-2"])).to_pylist() == [
        date(2024, 2, 29),
        None,
        None,
    ]
    with pytest.raises(ValueError, match="no year and month"):
        compile_layout("15:04:05")
    with pytest.raises(ValueError, match="twice"):
        compile_layout("2006 2006-01")


# -- type names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BIGINT", N64),
        ("double precision", D),
        ("TIMESTAMP WITH TIME ZONE", T),
        ("timestamptz", T),
        ("numeric(20,4)", DecimalType(4, 20)),
        ("DECIMAL_TEXT(38,9)", DecimalType(9)),
        ("text[]", ListType(V)),
        ('STRUCT(a BIGINT, "b c" VARCHAR[], d STRUCT(x DOUBLE))[]', None),
        ("jsonb", J),
    ],
)
def test_type_names_round_trip(text: str, expected: SqlType | None) -> None:
    parsed = parse_type(text)
    if expected is not None:
        assert parsed == expected
    assert parse_type(str(parsed)) == parsed


# -- typed values, type options ---------------------------------------------------------------


def test_relist_replaces_elements_and_keeps_offsets_and_null_lists() -> None:
    lists = pa.array([[1], [2, 3], None, [], [4, 5, 6]], pa.list_(pa.int64()))
    for sliced in (lists, lists.slice(1), lists.slice(1, 3)):
        seen: list[int] = []

        def double(items: pa.Array, seen: list[int] = seen) -> pa.Array:
            seen.append(len(items))
            return pc.multiply(items, 2)

        expected = [None if v is None else [2 * x for x in v] for v in sliced.to_pylist()]
        assert relist(sliced, double).to_pylist() == expected
        assert seen == [len(elements(sliced))]  # one call for every element of the slice


def test_present_tags_and_bool_text() -> None:
    values = attr({"S": "x"}, {"BOOL": True}, {"NULL": True}, None, {"BOOL": False})
    present = present_tags(values)
    assert sorted(present) == ["BOOL", "S"]  # NULL is no value; absent tags are left out
    assert bool_text(present["BOOL"]).to_pylist() == [None, "true", None, None, "false"]
    assert present_tags(pa.nulls(2, pa.null())) == {}  # the elements of empty lists


def test_type_options_join_the_settings_with_what_the_engine_holds() -> None:
    point = StructType((("x", D), ("y", D)))
    settings = TypeSettings(
        time_format="02/01/2006",
        columns=(
            DeclaredColumn("pk"),
            DeclaredColumn("at", point),
            DeclaredColumn("tags", ListType(V)),
            DeclaredColumn("rest", json_object=True),
        ),
    )
    duckdb, sqlite, postgres = (TypeOptions(settings, s) for s in (DUCKDB, SQLITE, POSTGRES))
    assert [duckdb.declared_type("at"), sqlite.declared_type("at")] == [point, J]
    assert [postgres.declared_type("tags"), sqlite.declared_type("tags")] == [ListType(V), J]
    assert duckdb.declared_type("rest") == J
    assert duckdb.declared_type("pk") is None  # declared, its type inferred
    assert duckdb.declared_type("other") is None
    assert duckdb.declared_column("pk") == DeclaredColumn("pk")
    assert duckdb.json_object_column == "rest"
    assert TypeOptions().json_object_column is None
    assert duckdb.layout == compile_layout("02/01/2006")
    assert TypeOptions().layout == compile_layout(DEFAULT_TIME_FORMAT)
    assert TypeOptions() == TypeOptions(TypeSettings(), TypeSupport())


# -- unnesting, declared columns, json_object ------------------------------------------------


def test_unnest_depth_flattens_maps_into_dotted_columns() -> None:
    images = typed(
        {
            "pk": {"S": "1"},
            "a": {"N": "1"},
            "b": {"M": {"x": {"N": "2"}, "y": {"M": {"z": {"N": "3"}}}}},
        },
        {"pk": {"S": "2"}, "b": {"S": "not a map"}},
    )
    for depth, names in (
        (0, ["a", "b", "pk"]),
        (1, ["a", "b", "b.x", "b.y", "pk"]),
        (2, ["a", "b", "b.x", "b.y.z", "pk"]),
    ):
        flat = unnest(images, depth)
        assert flat is not None
        present = [n for n in flat.type.names if flat.field(n).null_count < len(flat)]
        assert sorted(present) == names, depth
    columns = infer_columns(images, options=TypeOptions(TypeSettings(unnest_depth=1)))
    assert [(c.name, c.type) for c in columns] == [  # in name order
        ("a", N64),
        ("b", V),  # the item whose b is a string keeps it
        ("b.x", N64),
        ("b.y", J),
        ("pk", V),
    ]
    spec = TableSpec("t", tuple(columns), ("pk",))
    rows = image_rows(spec, images, images, upserts(2), TypeOptions(TypeSettings(unnest_depth=1)))
    assert rows.column("b.y").to_pylist() == ['{"z":3}', None]
    assert rows.column("b").to_pylist() == [None, "not a map"]


def test_a_duplicate_flattened_name_is_an_error() -> None:
    images = typed({"pk": {"S": "1"}, "a.b": {"N": "1"}, "a": {"M": {"b": {"N": "2"}}}})
    with pytest.raises(DuplicateColumnError, match="'a.b'"):
        unnest(images, 1)


def test_declared_columns_and_the_json_object_column() -> None:
    options = TypeOptions(
        TypeSettings(
            columns=(
                DeclaredColumn("pk"),
                DeclaredColumn("amount", DecimalType(2, 20)),
                DeclaredColumn("code", V),
                DeclaredColumn("rest", json_object=True),
            ),
            unnest_depth=1,
        )
    )
    images = typed(
        {
            "pk": {"S": "1"},
            "amount": {"N": "12.345"},
            "code": {"N": "7"},
            "Foo": {"M": {"Age": {"N": "35"}, "Name": {"S": "Joe"}}},
            "Bar": {"L": [{"S": "x"}]},
        },
        {"pk": {"S": "2"}, "amount": {"N": "1"}},
    )
    columns = infer_columns(images, options=options)
    assert [(c.name, c.type) for c in columns] == [
        ("amount", DecimalType(2, 20)),
        ("code", V),
        ("rest", J),
        ("pk", V),
    ]
    spec = evolve_spec(TableSpec("t", (Column("pk", V),), ("pk",)), images, options)
    assert {c.name: c.type for c in spec.columns} == {
        "pk": V,
        "rest": J,
        "amount": DecimalType(2, 20),
        "code": V,
    }
    spec = TableSpec("t", tuple(columns), ("pk",))
    rows = image_rows(spec, images, images, upserts(2), options).to_pylist()
    assert rows[0]["amount"] == Decimal("12.34")  # half to even at the declared scale
    assert rows[0]["code"] == "7"
    assert json.loads(rows[0]["rest"]) == {"Foo.Age": 35, "Foo.Name": "Joe", "Bar": ["x"]}
    assert rows[1]["rest"] == "{}"


# -- schema evolution and TTL at the conversion level ----------------------------------------


class Captured(logging.Handler):
    """Records of the sync loggers (pytest runs with -p no:logging, so no caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def sync_log() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("sync")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_conflicting_values_widen_the_column_and_are_counted_in_a_log_line(
    sync_log: Captured,
) -> None:
    spec = TableSpec("t", (Column("pk", V), Column("n", N64), Column("flag", B)), ("pk",))
    page = parse_get_records(
        records_body(
            record("MODIFY", "1", {"n": {"N": "1.5"}, "flag": {"S": "maybe"}}),
            record("MODIFY", "2", {"n": {"N": "2"}, "flag": {"S": "yes"}}),
        )
    )
    rows, evolved, newest = stream_rows(spec, [page])
    assert {c.name: c.type for c in evolved.columns} == {"pk": V, "n": D, "flag": V}
    assert rows.column("n").to_pylist() == [1.5, 2.0]
    assert rows.column("flag").to_pylist() == ["maybe", "yes"]
    assert newest == pytest.approx(1_795_520_000.5)
    assert any(
        "'n' widened from BIGINT to DOUBLE: the batch brought value(s) it could not hold "
        "(2 of type DOUBLE)" in m
        for m in sync_log.messages
    ), sync_log.messages
    assert any(
        "'flag' widened from BOOLEAN to VARCHAR: the batch brought value(s) it could not hold "
        "(2 of type VARCHAR)" in m
        for m in sync_log.messages
    ), sync_log.messages


def test_struct_fields_appearing_later_grow_the_struct(sync_log: Captured) -> None:
    options = TypeOptions(support=DUCKDB)
    spec = TableSpec("t", (Column("pk", V), Column("doc", StructType((("a", N64),)))), ("pk",))
    page = parse_get_records(
        records_body(record("INSERT", "1", {"doc": {"M": {"a": {"N": "1"}, "b": {"S": "new"}}}}))
    )
    rows, evolved, _ = stream_rows(spec, [page], options)
    assert evolved.column("doc") == Column("doc", StructType((("a", N64), ("b", V))))
    assert rows.column("doc").to_pylist() == [{"a": 1, "b": "new"}]
    assert any("'doc' is now STRUCT(a BIGINT, b VARCHAR)" in m for m in sync_log.messages)


def test_ttl_removals_become_soft_deletes_only_when_asked() -> None:
    old = {"n": {"N": "5"}, "gone": {"S": "only in the old image"}}
    page = parse_get_records(
        records_body(
            record("REMOVE", "ttl", old=old, ttl=True, when=1_795_520_001.25),
            record("REMOVE", "user", old=old),
            record("INSERT", "kept", {"n": {"N": "1"}}),
        )
    )
    spec = TableSpec("t", (Column("pk", V), Column("n", N64)), ("pk",))
    rows, hard_spec, _ = stream_rows(spec, [page])
    assert rows.column("_op").to_pylist() == [2, 2, 1]
    assert DELETED_AT not in hard_spec.column_names

    soft = TypeOptions(TypeSettings(ttl_deletes="soft"))
    rows, soft_spec, _ = stream_rows(spec, [page], soft)
    assert soft_spec.column(DELETED_AT) == Column(DELETED_AT, T)
    assert soft_spec.column("gone") == Column("gone", V)  # from the old image
    assert rows.column("_op").to_pylist() == [1, 2, 1]
    assert rows.column("n").to_pylist() == [5, None, 1]
    assert rows.column("gone").to_pylist() == ["only in the old image", None, None]
    assert rows.column(DELETED_AT).to_pylist() == [
        datetime(2026, 11, 24, 11, 33, 21, 250000, tzinfo=UTC),
        None,
        None,
    ]


# -- through every engine --------------------------------------------------------------------


@dataclass
class Mirror:
    """One table mirrored into an engine as the pipeline does it: a bootstrap from a Scan body
    swapped in with a checkpoint, then GetRecords bodies applied with theirs."""

    accelerator: Accelerator
    options: TypeOptions
    name: str = "mirror"
    spec: TableSpec = field(
        default_factory=lambda: TableSpec("mirror", (Column("pk", V),), ("pk",))
    )
    position: int = 0

    def bootstrap(self, *items: dict[str, Any]) -> None:
        page = typed(*items)
        staging = replace(self.spec, name=f"{self.name}{STAGING_SUFFIX}")
        staging = staging.with_columns(infer_columns(page.slice(0, 10), options=self.options))
        self.accelerator.create_table(staging)
        staging = evolve_spec(staging, page, self.options)
        rows = image_rows(staging, page, page, upserts(len(page)), self.options)
        self.accelerator.apply(self.name, staging, ChangeBatch(rows, None))
        self.accelerator.swap_in(self.name, staging, self.name, self.checkpoint())
        self.spec = replace(staging, name=self.name)

    def stream(self, *records: dict[str, Any]) -> None:
        page = parse_get_records(records_body(*records))
        rows, self.spec, _ = stream_rows(self.spec, [page], self.options)
        self.accelerator.apply(self.name, self.spec, ChangeBatch(rows, self.checkpoint()))

    def checkpoint(self) -> Checkpoint:
        self.position += 1
        return Checkpoint(ARN, (ShardPosition(ARN, "shardId-1", None, str(self.position)),))

    def table(self) -> pa.Table:
        handle = self.accelerator.query_handle()
        return handle.execute(f'SELECT * FROM "{self.name}" ORDER BY pk').read_all()

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["pk"]: r for r in self.table().to_pylist()}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mirrors(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``mirrors(**settings)`` opens the engine and returns a :class:`Mirror` on it, with
    those ``TypeSettings``."""
    connection = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    file = None if engine == "postgres" else tmp_path / f"mirror.{engine}"
    settings = AccelerationSettings(engine, "file", file, connection)  # type: ignore[arg-type]
    opened: list[Accelerator] = []

    def open_mirror(**types: Any) -> Mirror:
        accelerator = open_accelerator(settings)
        opened.append(accelerator)
        return Mirror(accelerator, TypeOptions(TypeSettings(**types), accelerator.type_support))

    yield open_mirror
    for accelerator in opened:
        accelerator.close()


ITEMS = [
    {
        "pk": {"S": "a"},
        "n_int": {"N": "42"},
        "n_big": {"N": "12345678901234567890"},
        "n_frac": {"N": "1.5"},
        "s": {"S": "hello"},
        "ts": {"S": "2024-03-15T14:30:00.123+02:00"},
        "day": {"S": "2024-03-15"},
        "flag": {"BOOL": True},
        "raw": {"B": b64(b"\x00\xffabc")},
        "nothing": {"NULL": True},
        "doc": {
            "M": {
                "city": {"S": "Paris"},
                "zip": {"N": "75001"},
                "geo": {"M": {"lat": {"N": "48.85"}}},
            }
        },
        "mixed": MIXED,
        "nums": {"L": [{"N": "1"}, {"N": "2"}]},
        "docs": {"L": [{"M": {"k": {"S": "v"}}}]},
        "tags": {"SS": ["a", "b"]},
        "scores": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b64(b"\x01")]},
    },
    {
        "pk": {"S": "b"},
        "n_int": {"N": "-7"},
        "n_big": {"N": "-1"},
        "n_frac": {"N": "2"},
        "ts": {"S": "2024-03-15T23:59:59Z"},
        "doc": {"M": {"city": {"S": "Berlin"}}},
        "mixed": {"L": []},
        "nums": {"L": [{"N": "3"}]},
    },
]
DOC = StructType((("city", V), ("geo", StructType((("lat", D),))), ("zip", N64)))
EXPECTED_TYPES: dict[str, dict[str, SqlType]] = {
    engine: {
        "pk": V,
        "n_int": N64,
        "n_big": DecimalType(0),
        "n_frac": D,
        "s": V,
        "ts": T,
        "day": DT,
        "flag": B,
        "raw": ColumnType.BLOB,
        "doc": DOC if engine == "duckdb" else J,
        "mixed": ListType(V) if engine == "duckdb" else J,
        "nums": J if engine == "sqlite" else ListType(N64),
        "docs": ListType(StructType((("k", V),))) if engine == "duckdb" else J,
        "tags": J if engine == "sqlite" else ListType(V),
        "scores": J if engine == "sqlite" else ListType(D),
        "blobs": J if engine == "sqlite" else ListType(ColumnType.BLOB),
    }
    for engine in ENGINES
}


def plain(value: Any, type_: SqlType) -> Any:
    """A queried value in comparable form: JSON columns parsed."""
    return json.loads(value) if type_ is J and value is not None else value


def assert_arrow_type(arrow: pa.DataType, type_: SqlType) -> None:
    if type_ is T:
        assert arrow == pa.timestamp("us", "UTC")
    elif isinstance(type_, ListType):
        assert pa.types.is_list(arrow)
        assert_arrow_type(arrow.value_type, type_.element)
    elif isinstance(type_, StructType):
        assert pa.types.is_struct(arrow)
        assert [arrow.field(i).name for i in range(arrow.num_fields)] == [
            n for n, _ in type_.fields
        ]
        for i, (_, field_type) in enumerate(type_.fields):
            assert_arrow_type(arrow.field(i).type, field_type)
    else:
        assert arrow == type_.arrow, (arrow, type_)


def test_every_dynamodb_type_lands_in_every_engine(engine: str, mirrors: Any) -> None:
    mirror = mirrors()
    mirror.bootstrap(*ITEMS)
    expected = EXPECTED_TYPES[engine]
    assert {c.name: c.type for c in mirror.spec.columns} == expected
    assert mirror.accelerator.table_spec("mirror") == mirror.spec  # read back from the engine
    table = mirror.table()
    for name, type_ in expected.items():
        assert_arrow_type(table.schema.field(name).type, type_)
    a, b = (mirror.rows()[k] for k in "ab")
    values = {name: plain(a[name], type_) for name, type_ in expected.items()}
    assert values["n_int"] == 42 and values["n_frac"] == 1.5 and values["s"] == "hello"
    assert values["n_big"] == Decimal("12345678901234567890")
    assert values["ts"] == datetime(2024, 3, 15, 12, 30, 0, 123000, tzinfo=UTC)
    assert values["day"] == date(2024, 3, 15)
    assert values["flag"] is True and values["raw"] == b"\x00\xffabc"
    assert values["doc"] == {"city": "Paris", "zip": 75001, "geo": {"lat": 48.85}}
    assert values["mixed"] == (["x", "1", "true"] if engine == "duckdb" else ["x", 1, True])
    assert values["nums"] == [1, 2]
    assert values["docs"] == [{"k": "v"}]
    assert sorted(values["tags"]) == ["a", "b"]
    assert sorted(values["scores"]) == [1, 2.5]
    assert values["blobs"] == ([b"\x01"] if engine != "sqlite" else ["AQ=="])
    b_doc = plain(b["doc"], expected["doc"])
    if engine == "duckdb":
        assert b_doc == {"city": "Berlin", "zip": None, "geo": None}
    else:  # JSON: the keys the item has, no null for the others
        assert b_doc == {"city": "Berlin"}
    assert plain(b["mixed"], expected["mixed"]) == []
    assert b["n_big"] == Decimal(-1) and b["s"] is None and b["tags"] is None
    assert "nothing" not in table.column_names  # NULL only: no column yet


def test_schema_evolves_during_streaming_in_every_engine(
    engine: str, mirrors: Any, sync_log: Captured
) -> None:
    mirror = mirrors()
    mirror.bootstrap(*ITEMS)
    mirror.stream(
        record(
            "MODIFY",
            "a",
            {
                **ITEMS[0],
                "n_int": {"N": "3.5"},  # BIGINT → DOUBLE
                "flag": {"S": "yes"},  # BOOLEAN → VARCHAR
                "added": {"S": "2025-01-01"},  # a new attribute: a new DATE column
                "doc": {
                    "M": {"city": {"S": "Paris"}, "zip": {"S": "75001-A"}, "country": {"S": "FR"}}
                },
                "nums": {"L": [{"N": "1"}, {"S": "two"}]},  # elements of mixed kinds now
                "scores": {"NS": ["99999999999999999999999"]},
                "ts": {"S": "not a time"},  # TIMESTAMP → VARCHAR
            },
        ),
        record("INSERT", "c", {"n_int": {"N": "1"}, "new_map": {"M": {"x": {"BOOL": False}}}}),
    )
    types = {c.name: c.type for c in mirror.spec.columns}
    assert types["n_int"] == D and types["flag"] == V and types["added"] == DT
    assert types["ts"] == V
    if engine == "duckdb":
        assert types["doc"] == StructType(
            (("city", V), ("geo", StructType((("lat", D),))), ("zip", V), ("country", V))
        )
        assert types["nums"] == ListType(V)
        assert types["new_map"] == StructType((("x", B),))
    else:
        assert types["doc"] == J and types["new_map"] == J
        assert types["nums"] == J  # PostgreSQL: no longer one scalar type, jsonb
    assert types["scores"] == (J if engine == "sqlite" else ListType(D))
    assert mirror.accelerator.table_spec("mirror") == mirror.spec
    rows = mirror.rows()
    assert {pk: r["n_int"] for pk, r in rows.items()} == {"a": 3.5, "b": -7.0, "c": 1.0}
    assert {pk: r["flag"] for pk, r in rows.items()} == {"a": "yes", "b": None, "c": None}
    assert rows["a"]["added"] == date(2025, 1, 1) and rows["b"]["added"] is None
    assert rows["a"]["ts"] == "not a time"
    assert rows["b"]["ts"].startswith("2024-03-15 23:59:59")  # the instant, as the engine writes
    doc = plain(rows["a"]["doc"], types["doc"])
    expected_doc = {"city": "Paris", "zip": "75001-A", "country": "FR"}
    if engine == "duckdb":
        expected_doc["geo"] = None  # a struct has every field
        assert plain(rows["b"]["doc"], types["doc"])["zip"] is None  # BIGINT → VARCHAR field
    assert doc == expected_doc
    nums = plain(rows["a"]["nums"], types["nums"])
    assert nums == (["1", "two"] if engine == "duckdb" else [1, "two"])
    assert plain(rows["b"]["nums"], types["nums"]) == (["3"] if engine == "duckdb" else [3])
    new_map = plain(rows["c"]["new_map"], types["new_map"])
    assert new_map == {"x": False}
    assert any("widened from BIGINT to DOUBLE" in m for m in sync_log.messages)


def test_bootstrap_pages_after_the_first_add_columns(engine: str, mirrors: Any) -> None:
    mirror = mirrors()
    mirror.bootstrap({"pk": {"S": "a"}})  # the key alone, as an empty table starts
    assert mirror.spec.column_names == ["pk"]
    mirror.stream(record("INSERT", "b", {"ts": {"S": "2024-01-01T00:00:00Z"}, "m": MAP}))
    assert mirror.spec.column("ts") == Column("ts", T)
    assert mirror.rows()["b"]["ts"] == datetime(2024, 1, 1, tzinfo=UTC)


def test_decimal_numbers_are_exact_in_every_engine(engine: str, mirrors: Any) -> None:
    mirror = mirrors(number_type="decimal", decimal_scale=9)
    mirror.bootstrap(
        {"pk": {"S": "a"}, "price": {"N": "12345678901234567890.123456789"}, "l": {"NS": ["0.1"]}},
        {"pk": {"S": "b"}, "price": {"N": "0.1"}},
    )
    assert mirror.spec.column("price") == Column("price", DecimalType(9))
    table = mirror.table()
    assert table.schema.field("price").type == pa.decimal128(38, 9)
    assert table.column("price").to_pylist() == [
        Decimal("12345678901234567890.123456789"),
        Decimal("0.100000000"),
    ]
    mirror.stream(record("MODIFY", "b", {"price": {"N": "1" * 30}}))  # widens to DOUBLE
    assert mirror.spec.column("price") == Column("price", D)
    assert mirror.rows()["b"]["price"] == float("1" * 30)


def test_ttl_soft_deletes_in_every_engine(engine: str, mirrors: Any) -> None:
    mirror = mirrors(ttl_deletes="soft")
    mirror.bootstrap(
        {"pk": {"S": "expired"}, "n": {"N": "1"}},
        {"pk": {"S": "removed"}, "n": {"N": "2"}},
        {"pk": {"S": "live"}, "n": {"N": "3"}},
    )
    assert mirror.spec.column(DELETED_AT) == Column(DELETED_AT, T)
    mirror.stream(
        record("REMOVE", "expired", old={"n": {"N": "1"}}, ttl=True, when=1_795_520_000.0),
        record("REMOVE", "removed", old={"n": {"N": "2"}}),
    )
    rows = mirror.rows()
    assert sorted(rows) == ["expired", "live"]
    assert rows["expired"]["n"] == 1
    assert rows["expired"][DELETED_AT] == datetime(2026, 11, 24, 11, 33, 20, tzinfo=UTC)
    assert rows["live"][DELETED_AT] is None
    mirror.stream(record("INSERT", "expired", {"n": {"N": "4"}}))  # written again: live
    assert mirror.rows()["expired"][DELETED_AT] is None


def test_unnested_and_json_object_columns_in_every_engine(engine: str, mirrors: Any) -> None:
    mirror = mirrors(
        unnest_depth=1,
        columns=(
            DeclaredColumn("pk"),
            DeclaredColumn("b.x"),
            DeclaredColumn("extra", json_object=True),
        ),
    )
    mirror.bootstrap(
        {"pk": {"S": "1"}, "a": {"N": "1"}, "b": {"M": {"x": {"N": "2"}, "y": {"S": "why"}}}},
    )
    assert mirror.spec.column_names == ["pk", "extra", "b.x"]
    row = mirror.rows()["1"]
    assert row["b.x"] == 2
    assert json.loads(row["extra"]) == {"a": 1, "b.y": "why"}


# -- TTL through the pipeline: a REMOVE record made TTL-shaped in the stream fault proxy -----


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=7) as p:
        yield p


def test_the_pipeline_keeps_ttl_removals_as_soft_deletes(
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list[DatasetSync],
) -> None:
    create_table(ddb, table_name)
    for pk in ("expired", "removed", "live"):
        ddb.put_item(TableName=table_name, Item={"pk": {"S": pk}, "version": {"N": "1"}})
    settings = settings_for(
        proxy.url, table_name, "duckdb", "file", tmp_path, types=TypeSettings(ttl_deletes="soft")
    )
    first = start(settings, running)
    wait_for(lambda: first.status().state is State.READY, what="Ready")
    first.stop()
    first.accelerator.close()

    for pk in ("expired", "removed"):
        ddb.delete_item(TableName=table_name, Key={"pk": {"S": pk}})
    proxy.sync(table_name)
    with proxy.service.lock:  # the emulator never deletes by TTL: make one REMOVE look so
        stream = proxy.service.current(table_name, REGION)
        removals = [
            r.body
            for shard in stream.shards
            for r in shard.records
            if r.body["eventName"] == "REMOVE"
            and r.body["dynamodb"]["Keys"]["pk"]["S"] == "expired"
        ]
        assert len(removals) == 1
        removals[0]["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

    second = start(settings, running)
    wait_for(lambda: "removed" not in mirror_rows(second), what="the removals to be applied")
    rows = mirror_rows(second)
    assert sorted(rows) == ["expired", "live"]
    assert rows["expired"]["version"] == 1
    assert isinstance(rows["expired"][DELETED_AT], datetime)
    assert rows["live"][DELETED_AT] is None
    assert second.status().bootstraps == 0  # resumed from the checkpoint: the stream did it


# -- the spicepod keys -----------------------------------------------------------------------


def spicepod(params: dict[str, Any], columns: Any = None) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "from": "dynamodb:t",
        "name": "d",
        "params": params,
        "acceleration": {"enabled": True, "refresh_mode": "changes"},
    }
    if columns is not None:
        dataset["columns"] = columns
    return {"version": "v1", "kind": "Spicepod", "datasets": [dataset]}


def test_the_type_keys_of_the_spicepod_reach_the_conversion() -> None:
    params = {
        "number_type": "decimal",
        "decimal_scale": 4,
        "number_overflow": "error",
        "time_format": "2006-01-02 15:04:05",
        "unnest_depth": 2,
        "ttl_deletes": "soft",
    }
    columns = [
        {"name": "pk"},
        {"name": "total", "type": "DECIMAL(20,4)", "description": "exact"},
        {"name": "rest", "metadata": {"json_object": "*"}},
    ]
    (settings,) = parse_config(spicepod(params, columns), Path("/s/spicepod.yaml")).datasets
    assert settings.types == TypeSettings(
        number_type="decimal",
        decimal_scale=4,
        number_overflow="error",
        time_format="2006-01-02 15:04:05",
        unnest_depth=2,
        columns=(
            DeclaredColumn("pk"),
            DeclaredColumn("total", DecimalType(4, 20), "exact"),
            DeclaredColumn("rest", json_object=True),
        ),
        ttl_deletes="soft",
    )
    (defaults,) = parse_config(spicepod({}), Path("/s/spicepod.yaml")).datasets
    assert defaults.types == TypeSettings()


@pytest.mark.parametrize(
    ("params", "columns", "message"),
    [
        ({"number_type": "float"}, None, "params.number_type: expected one of auto, decimal"),
        ({"number_type": "decimal", "decimal_scale": 38}, None, "params.decimal_scale"),
        ({"decimal_scale": 2}, None, "decimal_scale: only used with number_type: decimal"),
        ({"number_overflow": "wrap"}, None, "params.number_overflow"),
        ({"time_format": "15:04"}, None, "params.time_format: .* no year and month"),
        ({"time_format": datetime(2006, 1, 2, 15, 4, 5)}, None, "time_format: quote"),
        ({"unnest_depth": -1}, None, "params.unnest_depth: expected an integer >= 0"),
        ({"ttl_deletes": "maybe"}, None, "params.ttl_deletes"),
        ({}, [{"name": "a", "type": "MONEY"}], r"columns\[0\].type: unknown type"),
        ({}, [{"name": "a"}, {"name": "a"}], r"columns\[1\].name: .* declared twice"),
        ({}, [{"name": "a", "metadata": {"json_object": "a"}}], 'only "\\*"'),
        (
            {},
            [{"name": j, "metadata": {"json_object": "*"}} for j in "ab"],
            r"columns\[1\].metadata.json_object: only one column",
        ),
        ({}, [{"name": "a", "tpye": "BIGINT"}], r"columns\[0\]: tpye: unknown key"),
    ],
)
def test_bad_type_keys_are_one_line_errors_naming_dataset_and_key(
    params: dict[str, Any], columns: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_config(spicepod(params, columns), Path("/s/spicepod.yaml"))
    assert "dataset 'd'" in str(raised.value) and "\n" not in str(raised.value)


def test_declared_nested_types_are_held_as_each_engine_can(engine: str, mirrors: Any) -> None:
    declared = (
        DeclaredColumn("doc", parse_type("STRUCT(city VARCHAR)")),
        DeclaredColumn("nums", parse_type("BIGINT[]")),
    )
    mirror = mirrors(columns=declared)
    mirror.bootstrap({"pk": {"S": "a"}, "doc": MAP, "nums": {"NS": ["1", "2"]}})
    types = {c.name: c.type for c in mirror.spec.columns}
    expected_doc = {"duckdb": StructType((("city", V), ("zip", N64)))}.get(engine, J)
    expected_nums = {"sqlite": J}.get(engine, ListType(N64))
    assert (types["doc"], types["nums"]) == (expected_doc, expected_nums)
    row = mirror.rows()["a"]
    assert plain(row["doc"], types["doc"]) == {"city": "Paris", "zip": 75001}
    assert plain(row["nums"], types["nums"]) == [1, 2]


def test_nested_and_binary_columns_widened_to_text_keep_their_values_as_json_and_base64(
    engine: str, mirrors: Any
) -> None:
    mirror = mirrors()
    mirror.bootstrap(
        {
            "pk": {"S": "a"},
            "doc": MAP,
            "nums": {"L": [{"N": "1"}, {"N": "2"}]},
            "raw": {"B": b64(b"\xff\x00")},
        }
    )
    mirror.stream(
        record("INSERT", "b", {"doc": {"S": "text"}, "nums": {"S": "none"}, "raw": {"S": "plain"}})
    )
    assert {c.name: c.type for c in mirror.spec.columns if c.name != "pk"} == dict.fromkeys(
        ("doc", "nums", "raw"), V
    )
    a, b = (mirror.rows()[k] for k in "ab")
    assert json.loads(a["doc"]) == {"city": "Paris", "zip": 75001}
    assert json.loads(a["nums"]) == [1, 2]
    assert a["raw"] == b64(b"\xff\x00")
    assert (b["doc"], b["nums"], b["raw"]) == ("text", "none", "plain")
