"""Every package keeper/ and prover/ import is declared in pyproject.toml.

A package that arrives only as someone else's dependency can vanish with their next
release; what we import, we declare.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"keeper", "prover"}


def _top_level_imports() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "keeper").rglob("*.py"), *(ROOT / "prover").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - OURS - set(sys.stdlib_module_names) - {"__future__"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0] for dep in project["dependencies"])
    return {_normalized(name) for name in names}


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for name in sorted(_top_level_imports()):
        dists = {_normalized(d) for d in distributions.get(name, [])}
        assert dists, f"{name} is imported but not installed"
        if not dists & declared:
            missing[name] = sorted(dists)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"
