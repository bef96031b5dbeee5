"""The engine-neutral widening rules: what an engine holds (``held``), the numeric and nested
cases of ``unify`` and PostgreSQL's one-element-type arrays (``uniform``)."""

from __future__ import annotations

import pytest

from sync.schema import ColumnType, DecimalType, ListType, SqlType, StructType, TypeSupport
from sync.widening import held, uniform, unify

DUCKDB = TypeSupport(structs=True, lists="any")
SQLITE = TypeSupport()
POSTGRES = TypeSupport(structs=False, lists="uniform")
STRUCTS_AND_ARRAYS = TypeSupport(structs=True, lists="uniform")
V, N64, D, J = ColumnType.VARCHAR, ColumnType.BIGINT, ColumnType.DOUBLE, ColumnType.JSON
POINT = StructType((("x", D), ("y", D)))


@pytest.mark.parametrize(
    ("type_", "support", "expected"),
    [
        (N64, SQLITE, N64),  # scalars: every engine
        (POINT, DUCKDB, POINT),
        (POINT, POSTGRES, J),
        (POINT, SQLITE, J),
        (ListType(N64), DUCKDB, ListType(N64)),
        (ListType(N64), POSTGRES, ListType(N64)),
        (ListType(N64), SQLITE, J),
        (ListType(POINT), DUCKDB, ListType(POINT)),
        (ListType(POINT), POSTGRES, J),  # arrays of scalars only
        (ListType(ListType(N64)), POSTGRES, J),
        # At every depth: a struct kept, the list of structs inside it not.
        (
            StructType((("at", POINT), ("path", ListType(POINT)))),
            STRUCTS_AND_ARRAYS,
            StructType((("at", POINT), ("path", J))),
        ),
    ],
)
def test_held_makes_json_of_what_the_engine_lacks(
    type_: SqlType, support: TypeSupport, expected: SqlType
) -> None:
    assert held(type_, support) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (N64, D, D),
        (D, N64, D),
        (DecimalType(2, 20), DecimalType(4, 20), DecimalType(4)),  # 18 digits + 4 fit in 38
        (DecimalType(2), DecimalType(9), D),  # 36 integer digits + 9: beyond DECIMAL(38)
        (DecimalType(0), N64, DecimalType(0)),  # holds every BIGINT
        (N64, DecimalType(9), DecimalType(9)),  # 29 integer digits
        (DecimalType(2, 20), N64, D),  # 18 integer digits: not every BIGINT
        (DecimalType(9), D, D),
        (DecimalType(9), V, V),
        (ColumnType.BOOLEAN, N64, V),
    ],
)
def test_unify_numbers(a: SqlType, b: SqlType, expected: SqlType) -> None:
    assert unify(a, b) == expected


def test_unify_without_support_keeps_nested_values_as_json() -> None:
    assert unify(ListType(N64), ListType(D)) == ListType(D)  # element types still unify
    assert unify(ListType(N64), POINT) == J
    assert unify(J, ListType(V)) == J


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (N64, D, True),  # numbers widen into each other
        (N64, N64, True),
        (V, V, True),
        (N64, V, False),  # one array cannot hold both as their own type
        (ColumnType.BOOLEAN, N64, False),
        (POINT, POINT, False),  # not a scalar
    ],
)
def test_uniform_arrays_hold_one_scalar_type(a: SqlType, b: SqlType, expected: bool) -> None:
    assert uniform(a, b, unify(a, b, POSTGRES)) is expected
