"""The engines, one module each, found by name: a spec loads without the engine's driver."""

from __future__ import annotations

import importlib
from functools import cache

from sync.accelerators.spec import EngineSpec

# Engine name → the module declaring its ``SPEC`` (the order is the one errors list).
_SPECS = {
    "duckdb": "sync.accelerators.duckdb",
    "sqlite": "sync.accelerators.sqlite",
    "postgres": "sync.accelerators.postgres_spec",
    "cayenne": "sync.accelerators.cayenne.spec",
}


class UnknownEngine(ValueError):
    """No engine of that name (or dialect) is registered."""


def engine_names() -> tuple[str, ...]:
    return tuple(_SPECS)


@cache
def engine_spec(name: str) -> EngineSpec:
    """The spec of engine ``name``.

    Raises:
        UnknownEngine: naming the engines there are.
    """
    if name not in _SPECS:
        raise UnknownEngine(f"unknown engine {name!r} (known: {', '.join(_SPECS)})")
    spec: EngineSpec = importlib.import_module(_SPECS[name]).SPEC
    return spec


@cache
def dialect_spec(dialect: str) -> EngineSpec:
    """The spec of the engine whose SQL dialect is ``dialect`` (what a query handle reports):
    the first registered, when several engines query through one (Cayenne through DuckDB).

    Raises:
        UnknownEngine: no engine speaks it.
    """
    for name in _SPECS:
        if (spec := engine_spec(name)).dialect == dialect:
            return spec
    known = ", ".join(engine_spec(name).dialect for name in _SPECS)
    raise UnknownEngine(f"no engine speaks the {dialect!r} dialect (known: {known})")
