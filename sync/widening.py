"""Widening rules: which column type holds the values of two others, and what an engine holds.

Engine-neutral: they speak of SQL types (``sync.schema``) and an engine's ``TypeSupport`` only,
whatever source the values come from. Inference uses them to type a column from values of
several kinds; schema evolution uses them to widen a column when values of another kind come.
"""

from __future__ import annotations

from sync.schema import (
    ColumnType,
    DecimalType,
    ListType,
    SqlType,
    StructType,
    TypeSupport,
    is_scalar,
)


def held(type_: SqlType | None, support: TypeSupport) -> SqlType:
    """``type_`` as an engine with ``support`` holds it: what it lacks becomes JSON."""
    assert type_ is not None
    if isinstance(type_, StructType):
        if not support.structs:
            return ColumnType.JSON
        return StructType(tuple((n, held(t, support)) for n, t in type_.fields))
    if isinstance(type_, ListType):
        if support.lists == "none" or (support.lists == "uniform" and not is_scalar(type_.element)):
            return ColumnType.JSON
        return ListType(held(type_.element, support))
    return type_


def unify(a: SqlType, b: SqlType, support: TypeSupport | None = None) -> SqlType:
    """The narrowest type holding every value of ``a`` and ``b``.

    Integers with fractions are DOUBLE (DECIMAL where one side is DECIMAL and the other an
    integer it holds); maps merge their fields and lists unify their elements (as the engine's
    ``support`` allows, else JSON); maps, lists and JSON together are JSON; any other mix is
    VARCHAR — values become text, never dropped.
    """
    support = support or TypeSupport()
    if a == b:
        return a
    numeric = _unify_numbers(a, b)
    if numeric is not None:
        return numeric
    if isinstance(a, StructType) and isinstance(b, StructType):
        # The fields of ``a`` keep their place, new ones follow: a struct column only grows.
        names = [n for n, _ in a.fields] + sorted(n for n, _ in b.fields if a.field(n) is None)
        merged = []
        for name in names:
            left, right = a.field(name), b.field(name)
            merged.append(
                (
                    name,
                    unify(left, right, support)
                    if left is not None and right is not None
                    else left or right,
                )
            )
        return StructType(tuple(merged))  # type: ignore[arg-type]
    if isinstance(a, ListType) and isinstance(b, ListType):
        element = unify(a.element, b.element, support)
        if support.lists == "uniform" and not uniform(a.element, b.element, element):
            return ColumnType.JSON
        return ListType(element)
    if not is_scalar(a) and not is_scalar(b):
        return ColumnType.JSON
    return ColumnType.VARCHAR


def _unify_numbers(a: SqlType, b: SqlType) -> SqlType | None:
    kinds = {a, b}
    if kinds == {ColumnType.BIGINT, ColumnType.DOUBLE}:
        return ColumnType.DOUBLE
    decimals = [t for t in (a, b) if isinstance(t, DecimalType)]
    if not decimals:
        return None
    others = [t for t in (a, b) if not isinstance(t, DecimalType)]
    if not others:
        scale = max(d.scale for d in decimals)
        digits = max(d.integer_digits for d in decimals)
        return DecimalType(scale) if digits + scale <= 38 else ColumnType.DOUBLE
    (exact,), (other,) = decimals, others
    if other is ColumnType.BIGINT:
        return exact if exact.integer_digits >= 19 else ColumnType.DOUBLE
    if other is ColumnType.DOUBLE:
        return ColumnType.DOUBLE
    return None


def uniform(a: SqlType, b: SqlType, unified: SqlType) -> bool:
    """Whether values of ``a`` and ``b`` unified as ``unified`` can share an array of an
    engine whose lists are ``uniform`` (PostgreSQL: one scalar element type; numbers may widen
    into each other, other scalars only when they are of one type)."""
    if not (is_scalar(unified) and is_scalar(a) and is_scalar(b)):
        return False
    return unified is not ColumnType.VARCHAR or a == b
