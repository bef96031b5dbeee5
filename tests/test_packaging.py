"""Every module the packages import at load time is a declared dependency, so ``pip install .``
(without the dev extras, which pull in most of the same libraries) gives a working
``flightsrv``. Imports inside functions are the lazy ones of optional extras (postgres)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sync", "flightsrv")


def _top_level_imports(path: Path) -> set[str]:
    """Names of the modules ``path`` imports at module level; imports guarded by a ``try`` are
    an optional extra's, which say what to install when missing."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.match(r"[A-Za-z0-9_.-]+", text).group() for text in project["dependencies"])
    return {name.lower().replace("_", "-") for name in names}


def _third_party_imports() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in _top_level_imports(path):
                if name in sys.stdlib_module_names or name in PACKAGES or name == "__future__":
                    continue
                found.setdefault(name, set()).add(path.relative_to(ROOT))
    return found


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = packages_distributions()
    missing = {}
    for module, paths in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(str(p) for p in paths)
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_optional_drivers_are_imported_lazily() -> None:
    """The postgres extra's drivers load only when a dataset uses that engine."""
    check = (
        "import sys, flightsrv.cli, flightsrv.runtime; "
        "print(sorted(m for m in ('psycopg', 'pgpq') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
