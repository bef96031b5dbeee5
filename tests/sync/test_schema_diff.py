"""The schema diff every SQL engine is handed: what to create, what to add, what to widen, and
which type changes are widenings at all."""

from __future__ import annotations

import pytest

from sync.schema import (
    Column,
    ColumnType,
    DecimalType,
    ListType,
    SchemaChangeError,
    SchemaDiff,
    SqlType,
    StructType,
    TableSpec,
    Widened,
    diff,
    widens,
)

BIGINT, DOUBLE, VARCHAR = ColumnType.BIGINT, ColumnType.DOUBLE, ColumnType.VARCHAR
BOOLEAN, BLOB, JSON = ColumnType.BOOLEAN, ColumnType.BLOB, ColumnType.JSON
TIMESTAMP, DATE = ColumnType.TIMESTAMP, ColumnType.DATE


def table(*columns: tuple[str, SqlType], key: tuple[str, ...] = ("pk",)) -> TableSpec:
    return TableSpec("orders", (Column("pk", VARCHAR), *(Column(n, t) for n, t in columns)), key)


def test_no_table_yet_is_created_as_wanted() -> None:
    wanted = table(("n", BIGINT))
    change = diff(None, wanted)
    assert change == SchemaDiff(wanted, create=True)
    assert not change.is_empty


def test_the_same_table_needs_no_change() -> None:
    current = table(("n", BIGINT), ("tags", JSON))
    change = diff(current, table(("n", BIGINT), ("tags", JSON)))
    assert change.is_empty
    assert (change.create, change.add, change.widen) == (False, (), ())


def test_new_columns_are_added_in_the_wanted_order() -> None:
    current = table(("n", BIGINT))
    wanted = table(("n", BIGINT), ("z", VARCHAR), ("a", TIMESTAMP))
    change = diff(current, wanted)
    assert change.add == (Column("z", VARCHAR), Column("a", TIMESTAMP))
    assert change.widen == ()
    assert not change.create and not change.is_empty
    assert change.wanted is wanted


def test_widened_columns_carry_both_types_and_mix_with_added_ones() -> None:
    current = table(("n", BIGINT), ("flag", BOOLEAN), ("raw", BLOB))
    wanted = table(("n", DOUBLE), ("flag", VARCHAR), ("raw", BLOB), ("new", DATE))
    change = diff(current, wanted)
    assert change.widen == (Widened("n", BIGINT, DOUBLE), Widened("flag", BOOLEAN, VARCHAR))
    assert change.add == (Column("new", DATE),)


def test_columns_the_table_has_beyond_the_wanted_ones_are_kept() -> None:
    current = table(("n", BIGINT), ("old", VARCHAR))
    assert diff(current, table(("n", BIGINT))).is_empty


def test_a_narrowing_is_refused_before_the_engine_sees_it() -> None:
    with pytest.raises(SchemaChangeError, match="'n' cannot change from DOUBLE to BIGINT"):
        diff(table(("n", DOUBLE)), table(("n", BIGINT)))


def test_a_key_column_keeps_its_type() -> None:
    with pytest.raises(SchemaChangeError, match="key column 'pk'"):
        diff(table(), TableSpec("orders", (Column("pk", JSON),), ("pk",)))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (BIGINT, DOUBLE),
        (DecimalType(9), DOUBLE),
        (BIGINT, DecimalType(9)),  # 29 integer digits hold every BIGINT
        (DecimalType(2, 10), DecimalType(9)),
        (BOOLEAN, VARCHAR),
        (BLOB, VARCHAR),
        (TIMESTAMP, VARCHAR),
        (DATE, VARCHAR),
        (JSON, VARCHAR),
        (ListType(BIGINT), VARCHAR),
        (ListType(BIGINT), JSON),
        (StructType((("a", BIGINT),)), JSON),
        (ListType(BIGINT), ListType(DOUBLE)),
        (StructType((("a", BIGINT),)), StructType((("a", DOUBLE), ("b", VARCHAR)))),
        (
            StructType((("a", StructType((("x", BIGINT),))),)),
            StructType((("a", StructType((("x", VARCHAR), ("y", BOOLEAN)))),)),
        ),
    ],
)
def test_widenings(before: SqlType, after: SqlType) -> None:
    assert widens(before, after)
    assert diff(table(("c", before)), table(("c", after))).widen == (Widened("c", before, after),)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (DOUBLE, BIGINT),
        (VARCHAR, BIGINT),
        (VARCHAR, JSON),  # text is not JSON
        (BIGINT, JSON),
        (BOOLEAN, BIGINT),
        (DATE, TIMESTAMP),  # a DATE column becomes VARCHAR, not an instant
        (BIGINT, DecimalType(20, 38)),  # 18 integer digits: not every BIGINT
        (DecimalType(9), DecimalType(2)),  # fewer fraction digits
        (DecimalType(2), DecimalType(9, 20)),  # fewer integer digits
        (DOUBLE, DecimalType(9)),
        (ListType(DOUBLE), ListType(BIGINT)),
        (StructType((("a", BIGINT), ("b", BIGINT))), StructType((("a", BIGINT),))),  # loses b
        (StructType((("a", VARCHAR),)), StructType((("a", BIGINT),))),
        (ListType(BIGINT), StructType((("a", BIGINT),))),
        (JSON, ListType(VARCHAR)),
    ],
)
def test_narrowings_and_other_changes(before: SqlType, after: SqlType) -> None:
    assert not widens(before, after)
    with pytest.raises(SchemaChangeError):
        diff(table(("c", before)), table(("c", after)))


def test_applied_widens_in_place_keeps_extra_columns_and_appends_the_added() -> None:
    current = table(("n", BIGINT), ("old", BOOLEAN), ("s", DATE))
    wanted = table(("s", VARCHAR), ("n", DOUBLE), ("tags", JSON))
    change = diff(current, wanted)
    assert change.applied(current) == table(
        ("n", DOUBLE), ("old", BOOLEAN), ("s", VARCHAR), ("tags", JSON)
    )
    assert diff(None, wanted).applied(None) == wanted
