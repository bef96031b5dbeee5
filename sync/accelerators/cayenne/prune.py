"""Which files a query can skip: the key values its WHERE pins a table's first key column to.

Only the plain shape of a point lookup is recognised — the table named once in the statement,
alone in its SELECT's FROM, and ``key = value`` or ``key IN (values…)`` among the top-level
AND of that SELECT's WHERE. Any other shape reads every file: pruning is an optimisation and
must never change a result.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import sqlglot
from sqlglot import exp

from sync.accelerators.cayenne.metastore import DataFile


def pinned_keys(
    sql_text: str, params: Sequence[object], first_keys: Mapping[str, str]
) -> dict[str, list[object]]:
    """Table → the values its first key column is pinned to (tables not pinned left out).

    ``first_keys`` maps each table to its first key column.
    """
    pinned: dict[str, list[object]] = {}
    for table, candidates in _plan(sql_text, tuple(sorted(first_keys.items()))):
        for tokens in candidates:
            values = [_resolve(token, params) for token in tokens]
            if all(value is not _UNKNOWN for value in values):
                pinned[table] = values
                break
    return pinned


class _Param(NamedTuple):
    """A statement parameter, by position."""

    position: int


@functools.lru_cache(maxsize=256)
def _plan(
    sql_text: str, first_keys: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, tuple[tuple[object, ...], ...]], ...]:
    """Per table, the value lists (literals or :class:`_Param`) of its WHERE's conjuncts that
    pin its first key, in order: the statement is parsed once, whatever its parameters."""
    try:
        statement = sqlglot.parse_one(sql_text, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return ()
    keys = dict(first_keys)
    placeholders = list(statement.find_all(exp.Placeholder))
    tables = list(statement.find_all(exp.Table))
    counts: dict[str, int] = {}
    for table in tables:
        counts[table.name] = counts.get(table.name, 0) + 1
    plan = []
    for table in tables:
        key = keys.get(table.name)
        if key is None or counts[table.name] != 1 or table.args.get("db"):
            continue
        select = table.parent_select
        if not isinstance(select, exp.Select) or select.args.get("joins"):
            continue
        source = select.args.get("from_")
        if source is None or source.this is not table or select.args.get("where") is None:
            continue
        names = {table.name, table.alias_or_name}
        candidates = []
        for condition in _conjuncts(select.args["where"].this):
            values = _values(condition, key, names, placeholders)
            if values is not None:
                candidates.append(tuple(values))
        if candidates:
            plan.append((table.name, tuple(candidates)))
    return tuple(plan)


def _resolve(token: object, params: Sequence[object]) -> object:
    if isinstance(token, _Param):
        return params[token.position] if token.position < len(params) else _UNKNOWN
    return token


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    """The operands of a top-level AND chain (the node itself if it is no AND)."""
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _values(
    condition: exp.Expression,
    key: str,
    names: set[str],
    placeholders: list[exp.Placeholder],
) -> list[object] | None:
    if isinstance(condition, exp.EQ):
        column, others = condition.this, [condition.expression]
        if not isinstance(column, exp.Column):
            column, others = condition.expression, [condition.this]
    elif isinstance(condition, exp.In) and not condition.args.get("query"):
        column, others = condition.this, list(condition.expressions)
    else:
        return None
    if not isinstance(column, exp.Column) or column.name != key:
        return None
    if column.table and column.table not in names:
        return None
    values = []
    for other in others:
        value = _value(other, placeholders)
        if value is _UNKNOWN:
            return None
        values.append(value)
    return values


_UNKNOWN = object()


def _value(node: exp.Expression, placeholders: list[exp.Placeholder]) -> object:
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        try:
            return int(node.this)
        except ValueError:
            return _UNKNOWN
    if isinstance(node, exp.Placeholder):
        number = node.this
        if number is None or number == "?":
            # ``?`` is numbered by position: trusted only when it is the only one.
            index = 0 if len(placeholders) == 1 else None
        else:
            try:
                index = int(number) - 1
            except ValueError:
                index = None
        if index is not None and index >= 0:
            return _Param(index)
    return _UNKNOWN


def may_hold(file: DataFile, values: Sequence[object]) -> bool:
    """Whether ``file`` may hold a row whose first key is one of ``values``."""
    low, high = file.min_key, file.max_key
    if low is None or high is None:
        return True
    for value in values:
        if value is None:
            continue
        if type(value) is not type(low) or type(value) is not type(high):
            return True  # compared across types: do not guess
        if low <= value <= high:  # type: ignore[operator]
            return True
    return False
