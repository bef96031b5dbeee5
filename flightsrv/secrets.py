"""Spice's secret references in ``spicepod.yaml``: ``${env:NAME}``, ``${secrets:NAME}``.

A value may hold references ``${ STORE:KEY }`` (whitespace inside the braces is allowed), each
replaced by the secret KEY read from the pod's top-level ``secrets:`` stores. ``STORE`` is a
store's ``name``, or ``secrets`` to search every store, the last declared first (as Spice
does). With no ``secrets:`` block the pod has Spice's default store, ``{from: env, name: env}``.

Any other ``${`` (a reference that is malformed, unclosed, names no store, or a secret that no
store holds) is an error, never kept as literal text: a credential that reads ``${secrets:X}``
would otherwise be sent to AWS as is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANY_STORE = "secrets"
STORE_KEYS = {"from", "name", "description", "params"}
ENV_PARAMS = {"file_path"}
_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*:\s*([^\s{}:]+)\s*\}")
_DOTENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")


class SecretError(ValueError):
    """A ``secrets:`` store or a reference cannot be resolved; the message says which."""


@dataclass(frozen=True)
class EnvStore:
    """Spice's ``env`` store: the process environment, then ``.env``-style files (the pod's
    ``.env.local`` and ``.env``, or ``params.file_path`` alone), the first holding the key wins.
    """

    name: str
    files: tuple[Mapping[str, str], ...]

    def get(self, key: str) -> str | None:
        for source in (os.environ, *self.files):
            if key in source:
                return source[key]
        return None


@dataclass(frozen=True)
class Secrets:
    """The pod's secret stores, in declaration order."""

    stores: tuple[EnvStore, ...]

    def resolve(self, value: str) -> str:
        """``value`` with every reference replaced by its secret.

        Raises:
            SecretError: a malformed reference, an unknown store, or a secret not found.
        """
        parts = []
        position = 0
        while (start := value.find("${", position)) >= 0:
            match = _REFERENCE.match(value, start)
            if match is None:
                end = value.find("}", start)
                text = value[start:] if end < 0 else value[start : end + 1]
                raise SecretError(
                    f"malformed secret reference {text!r} (expected ${{env:NAME}} or "
                    "${secrets:NAME})"
                )
            parts += [value[position:start], self._lookup(match.group(1), match.group(2))]
            position = match.end()
        return "".join([*parts, value[position:]])

    def _lookup(self, store: str, key: str) -> str:
        reference = f"${{{store}:{key}}}"
        if store == ANY_STORE:
            # Spice upper-cases the key for env stores: ${secrets:pg_pass} reads PG_PASS.
            candidates = [
                (s, k) for s in reversed(self.stores) for k in dict.fromkeys([key, key.upper()])
            ]
        else:
            named = [s for s in reversed(self.stores) if s.name == store]
            if not named:
                names = ", ".join(sorted({s.name for s in self.stores})) or "none"
                raise SecretError(
                    f"{reference}: no secret store named {store!r} (declared: {names}; "
                    f"{ANY_STORE!r} searches them all)"
                )
            candidates = [(s, key) for s in named]
        for source, name in candidates:
            found = source.get(name)
            if found is not None:
                return found
        if store == ANY_STORE:
            raise SecretError(f"secret {key} is in no secret store ({reference})")
        raise SecretError(f"environment variable {key} is not set ({reference})")

    def resolve_tree(self, node: Any, where: str) -> Any:
        """``node`` (parsed YAML) with references resolved in every string value.

        Raises:
            SecretError: as :meth:`resolve`, its message prefixed by the key's path.
        """
        if isinstance(node, str):
            try:
                return self.resolve(node)
            except SecretError as e:
                raise SecretError(f"{where}: {e}") from None
        if isinstance(node, dict):
            return {k: self.resolve_tree(v, _key_where(where, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve_tree(v, _item_where(where, i, v)) for i, v in enumerate(node)]
        return node


def _key_where(where: str, key: Any) -> str:
    if not where:
        return str(key)
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def _item_where(where: str, index: int, item: Any) -> str:
    """A list item's path; a dataset is named by its ``name``, as other config errors do."""
    if where == "datasets" and isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"dataset {item['name']!r}:"
    return f"{where}[{index}]"


def load_secrets(raw: Any, base: Path) -> Secrets:
    """The top-level ``secrets:`` list (Spice's shape) as stores; relative paths resolve
    against ``base``, the pod's folder.

    Raises:
        SecretError: an unknown key, an unsupported store, or an unreadable file.
    """
    if raw is None:
        return Secrets((_env_store("env", None, base),))
    if not isinstance(raw, list):
        raise SecretError("secrets: expected a list of stores such as '- from: env'")
    stores = []
    for index, entry in enumerate(raw):
        where = f"secrets[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("from"), str):
            raise SecretError(f"{where}: expected a mapping with from (env) and name")
        unknown = set(entry) - STORE_KEYS
        if unknown:
            raise SecretError(f"{where}: {sorted(unknown)[0]}: unknown key ({sorted(STORE_KEYS)})")
        source = entry["from"]
        if source != "env":
            hint = (
                " (a .env file is read by the env store: params.file_path)"
                if source.split(":")[0] == "file"
                else ""
            )
            raise SecretError(
                f"{where}.from: secret store {source!r} is not supported (supported: env){hint}"
            )
        name = entry.get("name", source)
        if not isinstance(name, str) or not name:
            raise SecretError(f"{where}.name: expected a store name")
        params = entry.get("params") or {}
        if not isinstance(params, dict) or set(params) - ENV_PARAMS:
            raise SecretError(f"{where}.params: the env store takes only file_path")
        file_path = params.get("file_path")
        stores.append(_env_store(name, None if file_path is None else str(file_path), base, where))
    return Secrets(tuple(stores))


def _env_store(name: str, file_path: str | None, base: Path, where: str = "") -> EnvStore:
    if file_path is None:  # Spice's default: .env.local over .env, when present
        paths = [base / ".env.local", base / ".env"]
        return EnvStore(name, tuple(read_dotenv(p) for p in paths if p.is_file()))
    path = Path(file_path)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise SecretError(f"{where}.params.file_path: {path} is not a file")
    return EnvStore(name, (read_dotenv(path),))


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefix, ``#`` comments, quoted values) of ``path``.

    Raises:
        SecretError: the file cannot be read, or a line is not ``KEY=VALUE``.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise SecretError(f"{path}: cannot read: {e.strerror}") from e
    values = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            raise SecretError(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
