"""The sources, one package each, found by kind: a source's module (and its client library)
loads on first use."""

from __future__ import annotations

import importlib

from sync.schema import TypeSupport
from sync.settings import DatasetSettings
from sync.source import Source

# Source kind → "module:class" implementing ``Source``, and the extra that installs what the
# module needs beyond the core dependencies (None: nothing more).
_SOURCES: dict[str, tuple[str, str | None]] = {
    "dynamodb": ("sync.dynamodb.source:DynamoDBSource", None),
}


class UnknownSource(ValueError):
    """No source of that kind is registered."""


class SourceNotInstalled(ImportError):
    """The source's module needs a library that is not installed; the message says which extra
    installs it."""


def source_kinds() -> tuple[str, ...]:
    return tuple(_SOURCES)


def open_source(
    settings: DatasetSettings, type_support: TypeSupport, kind: str = "dynamodb"
) -> Source:
    """The source of kind ``kind`` for ``settings``; ``type_support`` is what the accelerator
    holds (the nested types; the rest is stored as JSON).

    Raises:
        UnknownSource: naming the kinds there are.
        SourceNotInstalled: the module's library is missing (with the install hint).
    """
    if kind not in _SOURCES:
        raise UnknownSource(f"unknown source {kind!r} (known: {', '.join(_SOURCES)})")
    target, extra = _SOURCES[kind]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (e.name == module_name or module_name.startswith(f"{e.name}.")):
            raise  # the module itself is missing: a packaging bug, not a missing extra
        package = f"dynamirror[{extra}]" if extra else "dynamirror"
        raise SourceNotInstalled(
            f"the {kind} source needs {e.name}, which is not installed: pip install '{package}'"
        ) from e
    source: Source = getattr(module, class_name)(settings, type_support)
    return source
