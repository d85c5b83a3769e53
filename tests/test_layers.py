"""The house's one rule: dependencies point one way, downward (docs/architecture.md).

Every import in keeper/ and prover/ is read from the source (imports inside functions
included) and checked against the order of the rooms.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A module may import its own room and the rooms before it.
ROOMS = ("core", "store", "chain", "stream", "ops", "devnet", "engine", "cli")
COMMANDS = "keeper.cli.commands"  # only its registry (__init__) imports a command module


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(module: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Each import statement: its line and the modules it may name."""
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level], base]).strip(".")
            # `from keeper.cli import commands` names a module, so do the imported names.
            yield node.lineno, [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _room(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "keeper" or len(parts) < 2 or parts[1] not in ROOMS:
        return None
    return ROOMS.index(parts[1])


def violations(module: str, source: str) -> list[str]:
    """What ``module`` (its ``source``) imports against the rules."""
    own = _room(module)
    found = []
    for line, targets in _imports(module, source):
        rooms = [r for t in targets if (r := _room(t)) is not None]
        if own is not None and rooms and max(rooms) > own:
            found.append(f"line {line}: {targets[0]} ({ROOMS[max(rooms)]} is above {ROOMS[own]})")
        if module != COMMANDS and any(t.startswith(COMMANDS + ".") for t in targets):
            found.append(f"line {line}: {targets[0]} imports a command")
        if module.startswith("prover") and any(t.split(".")[0] == "keeper" for t in targets):
            found.append(f"line {line}: {targets[0]} (prover/ knows nothing of the keeper)")
    return found


def _sources() -> list[Path]:
    return sorted([*(ROOT / "keeper").rglob("*.py"), *(ROOT / "prover").rglob("*.py")])


def test_every_keeper_module_is_in_a_room() -> None:
    homeless = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "keeper").rglob("*.py")
        if p.parent != ROOT / "keeper" and _room(_module_name(p)) is None
    ]
    assert homeless == []
    assert {p.name for p in (ROOT / "keeper").glob("*.py")} == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_downward(path: Path) -> None:
    assert violations(_module_name(path), path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("keeper.store.jobs", "def f():\n    from keeper.engine import worker\n", 1),
        ("keeper.chain.client", "from ..engine.policy import decide\n", 1),
        ("keeper.engine.daemon", "from keeper.cli.commands import run_cmd\n", 2),
        ("keeper.cli.main", "import keeper.cli.commands.prove_cmd\n", 1),
        ("prover.stone", "from keeper.core.errors import KeeperError\n", 1),
    ],
)
def test_the_checker_reports_what_breaks_the_rule(module: str, source: str, expected: int) -> None:
    assert len(violations(module, source)) == expected


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("keeper.engine.worker", "from keeper.store.jobs import JobStore\nimport prover.facts\n"),
        ("keeper.cli.commands", "from keeper.cli.commands import run_cmd\n"),
        ("keeper.cli.main", "from keeper.cli import commands\n"),
        ("keeper.chain.client", "from .errors import ChainError\n"),
    ],
)
def test_the_checker_allows_what_the_rule_allows(module: str, source: str) -> None:
    assert violations(module, source) == []


def test_the_architecture_page_matches_the_tree() -> None:
    """docs/architecture.md lists the rooms in this order and every module of each."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {
        cells[0].strip("` "): cells[2]
        for line in page.splitlines()
        if line.startswith("| `") and len(cells := line.strip("|").split("|")) == 3
    }
    assert tuple(rows) == ROOMS
    for room, listed in rows.items():
        modules = {p.stem for p in (ROOT / "keeper" / room).glob("*.py") if p.stem != "__init__"}
        if (ROOT / "keeper" / room / "commands").is_dir():
            modules.add("commands/*")
        named = {m.strip(" `") for m in listed.split(",")}
        assert named == modules, f"{room}: page {sorted(named)}, tree {sorted(modules)}"
